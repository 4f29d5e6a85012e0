"""torch.distributed on the CPU (gloo, two processes) gives what one process gives; Slurm via submitit locally.

The worker half of this file runs as a script (`python tests/test_distributed.py DATA OUT`), once alone and
once under `python -m torch.distributed.run --nproc-per-node 2`; each process pickles what it computed
into OUT/rank<r>.pkl and the tests compare:
- evaluation: semantic (mIoU, class IoUs, iIoU, boundary bands, confusion matrices) through the model loop
  and the prediction-file loop, PQ through the panoptic model loop, COCO bbox / segm AP through the
  detector loop, all bit for bit. The "models" are oracles that return perturbed ground truth looked up
  by the input image, so every prediction is exact and independent of the process that makes it;
- training: a DDP step of a zoo model (the ranks end with identical parameters), and a tiny model whose
  DDP run (total batch 2 = 1 image per rank), interrupted and resumed, ends where one process with batch 2
  ends.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

TESTS = Path(__file__).resolve().parent


# --- oracles: perturbed ground truth, looked up by the exact input image ------------------------------------


def _key(image: torch.Tensor) -> str:
    return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _as_input(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float in [0, 1], as the evaluation loops feed models."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


class OracleSegmenter(nn.Module):
    """One-hot logits of the frame's train ids shifted by a pixel, with 10% random classes."""

    def __init__(self, frames) -> None:
        from alignbench.bench.data.cityscapes import read_frame

        super().__init__()
        self.table = {}
        for index, frame in enumerate(frames):
            sample = read_frame(frame)
            rng = np.random.default_rng(index)
            ids = np.roll(sample.train_ids, shift=(1, 1), axis=(0, 1)).astype(np.int64)
            noise = (rng.random(ids.shape) < 0.1) | (ids == 255)
            ids[noise] = rng.integers(0, 19, int(noise.sum()))
            self.table[_key(_as_input(sample.image))] = torch.from_numpy(ids)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        ids = self.table[_key(image[0])]
        return F.one_hot(ids, 19).permute(2, 0, 1)[None].float()


class OracleDetector(nn.Module):
    """The image's instances with jittered boxes, shifted masks, random scores and a false positive."""

    def __init__(self, dataset) -> None:
        super().__init__()
        self.table = {}
        for index in range(len(dataset)):
            sample = dataset[index]
            rng = np.random.default_rng(100 + index)
            n = len(sample.boxes)
            boxes = sample.boxes + rng.normal(0, 1.5, sample.boxes.shape).astype(np.float32)
            boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.5)  # a detector's boxes: x2 > x1, y2 > y1 (jitter can flip a 4-px one)
            boxes = np.concatenate([boxes, [[2, 2, 20, 14]]]).astype(np.float32)
            labels = np.concatenate([sample.labels, [1]])
            scores = rng.random(n + 1).astype(np.float32)
            masks = np.roll(sample.masks, 1, axis=2).astype(np.float32)
            masks = np.concatenate([masks, np.zeros((1,) + masks.shape[1:], np.float32)])
            masks[-1, 2:14, 2:20] = 0.9
            self.table[_key(_as_input(sample.image))] = {
                "boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels), "scores": torch.from_numpy(scores),
                "masks": torch.from_numpy(masks)[:, None],
            }

    def predict(self, images):
        return [self.table[_key(image)] for image in images]


class OraclePanoptic(nn.Module):
    """The ground-truth segments shifted by a pixel, every third one dropped (a false negative)."""

    def __init__(self, dataset) -> None:
        super().__init__()
        self.table = {}
        for index in range(len(dataset)):
            sample = dataset[index]
            segment_map = np.roll(sample.segment_map, shift=(1, -1), axis=(0, 1)).copy()
            segments = []
            for k, segment in enumerate(sample.segments_info):
                if k % 3 == 2:
                    segment_map[segment_map == segment["id"]] = 0
                    continue
                isthing = segment["category_id"] in dataset.things.ids
                table = dataset.things if isthing else dataset.stuff
                segments.append({"id": segment["id"], "category_id": int(table.labels_of([segment["category_id"]])[0]),
                                 "isthing": isthing, "area": int((segment_map == segment["id"]).sum()), "score": 0.9})
            self.table[_key(_as_input(sample.image))] = {"panoptic": torch.from_numpy(segment_map), "segments_info": segments}

    def predict(self, images):
        return [self.table[_key(image)] for image in images]


class TinySegmenter(nn.Module):
    """A two-layer segmenter whose loss is the mean over images of each image's mean pixel loss, so that
    DDP's average of per-rank losses equals the loss of the whole batch in one process."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 19, 1)

    def forward(self, images):
        return self.conv2(torch.relu(self.conv1(images)))

    def loss(self, images, targets):
        per_pixel = F.cross_entropy(self(images), targets, ignore_index=255, reduction="none")
        return {"ce": per_pixel.flatten(1).mean(1).mean()}


def _tiny_config(iterations: int):
    from dataclasses import replace

    from alignbench.bench.recipes import training_config

    config = training_config("fapn_realtime", "smoke")
    # a large learning rate: a wrong split of the batch over the ranks would show in the weights
    return replace(config, iterations=iterations, batch_size=2, crop=(32, 64), base_lr=0.5, checkpoint_every=2)


# --- the worker --------------------------------------------------------------------------------------------


def worker(data: Path, out: Path) -> None:
    """Everything the tests compare, computed by this process (alone, or one rank of two)."""
    from alignbench import models
    from alignbench.bench import distributed
    from alignbench.bench.data.catalog import SemanticSplit
    from alignbench.bench.data.cityscapes import CITYSCAPES_DATASET, find_frames
    from alignbench.bench.data.coco import CocoDetectionDataset, CocoPanopticDataset, coco_paths
    from alignbench.bench.evaluation.detection import evaluate_detector, evaluate_panoptic_model
    from alignbench.bench.evaluation.loop import evaluate_semantic_model
    from alignbench.bench.evaluation.semantic import SemanticEvalConfig, evaluate_pairs, pair_predictions
    from alignbench.bench.train import SemanticTrainingSet, semantic_collate, train

    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    rank = distributed.rank()
    found: dict = {"world": distributed.world_size()}

    frames = find_frames(data, "val")
    semantic = evaluate_semantic_model(OracleSegmenter(frames), CITYSCAPES_DATASET, frames, bands=(3, 5, 8, 12))
    found["semantic"] = semantic.compute()
    found["band_confusion"] = semantic.band_confusion
    files = evaluate_pairs(pair_predictions(data, data / "predictions"), SemanticEvalConfig(bands=(3, 5, 8, 12)))
    found["semantic_files"] = files.compute()

    paths = coco_paths(data / "coco", "val")
    detections = CocoDetectionDataset(paths["instances_json"], data / "leftImg8bit" / "val", with_masks=True)
    found["coco"] = evaluate_detector(OracleDetector(detections), detections, ("bbox", "segm"))
    panoptic = CocoPanopticDataset(paths["panoptic_json"], paths["panoptic_dir"], data / "leftImg8bit" / "val")
    found["panoptic"] = evaluate_panoptic_model(OraclePanoptic(panoptic), panoptic)

    training = SemanticSplit.of(CITYSCAPES_DATASET, data, "train")
    scratch = out / "checkpoints"
    # a zoo model: one DDP step (total batch 2)
    torch.manual_seed(0)
    model = models.build("rt_fpn_r18")
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    config = _tiny_config(1)
    train(model, SemanticTrainingSet(training, config, 1), semantic_collate, config, scratch / "zoo")
    found["zoo_parameters"] = {name: p.detach().numpy().copy() for name, p in model.named_parameters()}
    found["zoo_changed"] = sum(not torch.equal(initial[name], p) for name, p in model.named_parameters())
    # the tiny model: 4 iterations, interrupted by an error in iteration 2 (after the checkpoint at 2), resumed
    config = _tiny_config(4)
    torch.manual_seed(0)
    tiny = TinySegmenter()
    calls = {"n": 0}
    original = tiny.loss

    def failing_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    tiny.loss = failing_loss
    try:
        train(tiny, SemanticTrainingSet(training, config, 2), semantic_collate, config, scratch / "tiny")
    except KeyboardInterrupt:
        pass
    del tiny.loss
    outcome = train(tiny, SemanticTrainingSet(training, config, 2), semantic_collate, config, scratch / "tiny")
    found["tiny_resumed_from"] = outcome.resumed_from
    found["tiny_parameters"] = {name: p.detach().numpy().copy() for name, p in tiny.named_parameters()}
    found["checkpoint_files"] = sorted(path.name for path in (scratch / "tiny").iterdir())

    with open(out / f"rank{rank}.pkl", "wb") as handle:
        pickle.dump(found, handle)
    distributed.barrier()
    distributed.shutdown()


# --- the tests ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """5 val scenes of 64x128 (an odd count: rank 0 evaluates 3, rank 1 two), their COCO export and
    label-id prediction PNGs; 2 training scenes."""
    from alignbench_test_helpers import perturb

    from alignbench.bench.data.cityscapes import find_frames, read_frame
    from alignbench.bench.data.coco import export_coco
    from alignbench.bench.data.synthetic import SynthSpec, write_dataset
    from alignbench.bench.io import write_png

    root = tmp_path_factory.mktemp("distributed-data")
    write_dataset(root, SynthSpec(n_train=2, n_val=5, size=(64, 128), seed=11), progress=False)
    export_coco(root, root / "coco", "val")
    rng = np.random.default_rng(5)
    for frame in find_frames(root, "val"):
        label_ids = read_frame(frame, with_image=False).label_ids
        write_png(root / "predictions" / frame.city / f"{frame.name}_pred.png", perturb(label_ids, rng))
    return root


def _environment() -> dict:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    environment.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    return environment


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list[str], cwd: Path) -> None:
    completed = subprocess.run(command, env=_environment(), cwd=cwd, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-6000:]


def _load(path: Path) -> dict:
    with open(path, "rb") as handle:
        return pickle.load(handle)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict:
    """The worker alone, and as two gloo ranks under torch.distributed.run."""
    single, pair = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("pair")
    _run([sys.executable, str(TESTS / "test_distributed.py"), str(data), str(single)], single)
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
          "--master-port", str(_free_port()), str(TESTS / "test_distributed.py"), str(data), str(pair)], pair)
    return {"single": _load(single / "rank0.pkl"), "ranks": [_load(pair / "rank0.pkl"), _load(pair / "rank1.pkl")]}


def _same(first, second) -> None:
    from alignbench_test_helpers import assert_same_scores

    assert_same_scores(first, second)  # exact: floats equal, NaN where NaN


def test_distributed_semantic_evaluation_equals_one_process(runs):
    single = runs["single"]
    assert single["world"] == 1 and [r["world"] for r in runs["ranks"]] == [2, 2]
    for key in ("semantic", "semantic_files"):
        reference = single[key]
        assert reference.n_images == 5 and 0.2 < reference.miou < 0.95
        assert set(reference.boundary_miou) == {3, 5, 8, 12} and all(0.1 < v < 0.95 for v in reference.boundary_miou.values())
        for found in runs["ranks"]:  # every rank returns the merged scores
            result = found[key]
            assert result.n_images == 5
            np.testing.assert_array_equal(result.confusion, reference.confusion)
            _same(result.to_json(), reference.to_json())
            _same({str(w): s for w, s in result.boundary_class_iou.items()}, {str(w): s for w, s in reference.boundary_class_iou.items()})
            _same(result.class_iiou, reference.class_iiou)
            _same(result.miou, reference.miou)
    for found in runs["ranks"]:
        np.testing.assert_array_equal(found["band_confusion"], single["band_confusion"])


def test_distributed_panoptic_and_coco_evaluation_equal_one_process(runs):
    single = runs["single"]
    reference = single["panoptic"]
    assert reference.n_images == 5 and 0.1 < reference.summary["All"]["pq"] < 0.95
    for found in runs["ranks"]:
        assert found["panoptic"].n_images == 5
        _same(found["panoptic"].summary, reference.summary)
        _same({str(k): v for k, v in found["panoptic"].per_class.items()}, {str(k): v for k, v in reference.per_class.items()})
    for iou_type in ("bbox", "segm"):
        metrics = single["coco"][iou_type].metrics
        assert 0.1 < metrics["AP"] < 0.99, metrics
        for found in runs["ranks"]:
            assert found["coco"][iou_type].n_detections == single["coco"][iou_type].n_detections
            _same(found["coco"][iou_type].metrics, metrics)
            np.testing.assert_array_equal(found["coco"][iou_type].stats, single["coco"][iou_type].stats)


def test_ddp_training_keeps_ranks_identical_and_matches_one_process(runs):
    first, second = runs["ranks"]
    assert first["zoo_changed"] > 10  # the step trained the model
    for name, value in first["zoo_parameters"].items():
        np.testing.assert_array_equal(value, second["zoo_parameters"][name], err_msg=name)
    # interrupted after the checkpoint at iteration 2 and resumed from it, on both ranks; only rank 0 wrote
    assert first["tiny_resumed_from"] == second["tiny_resumed_from"] == runs["single"]["tiny_resumed_from"] == 2
    assert first["checkpoint_files"] == ["final.pt", "train_log.jsonl"]  # rank 0 wrote the weights and the training log
    single = runs["single"]["tiny_parameters"]
    for name, value in first["tiny_parameters"].items():
        np.testing.assert_array_equal(value, second["tiny_parameters"][name], err_msg=name)
        # 1 image per rank with averaged gradients = 2 images in one process, up to float summation order
        np.testing.assert_allclose(value, single[name], rtol=1e-5, atol=1e-6, err_msg=name)
        assert not np.allclose(value, 0)


def test_total_batch_must_split_evenly():
    from alignbench.bench.errors import UserError
    from alignbench.bench.train import RankSampler, per_rank_batch

    assert per_rank_batch(16, 4) == 4 and per_rank_batch(2, 1) == 2
    with pytest.raises(UserError, match="total batch of 6 images cannot be split evenly over 4 processes"):
        per_rank_batch(6, 4)
    # iteration 1 of a total batch of 4 over 2 ranks: rank 1 takes samples 6 and 7
    assert list(RankSampler(1, 2, 4, 1, 2)) == [6, 7] and list(RankSampler(0, 2, 4, 0, 4)) == list(range(8))


def test_slurm_options_are_checked(tmp_path, monkeypatch):
    import argparse

    from alignbench_test_helpers import run_cli

    from alignbench.bench.commands.run_all import slurm_time
    from alignbench.bench.errors import UserError
    from alignbench.bench.execution import SlurmOptions, _executor

    assert slurm_time("90") == 90 and slurm_time("1:30:00") == 90 and slurm_time("2-00:00:30") == 2881
    with pytest.raises(argparse.ArgumentTypeError, match="H:MM:SS"):
        slurm_time("1:30")
    result = run_cli("run-all", "--partition", "gpu", "--results", tmp_path / "r.sqlite")
    assert result.returncode == 2 and result.stderr.strip() == "alignbench: error: --partition: only with --launcher slurm"
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed
    with pytest.raises(UserError, match=r"needs submitit: pip install 'alignbench\[slurm\]'"):
        _executor(SlurmOptions(executor="local"), tmp_path / "r.sqlite")


SUITE = """\
suite: tiny_slurm
paper: FaPN
table: Table I
task: semantic
recipe: fapn_realtime
metrics: [mIoU, band_3]
rows:
  - {row: fpn_r18, model: rt_fpn_r18, input_size: [64, 128]}
"""


def test_slurm_launcher_with_submitit_local_executor_runs_two_ranks_and_resumes(data, tmp_path):
    pytest.importorskip("submitit")
    from alignbench_test_helpers import run_cli

    from alignbench.bench.results import ResultsStore

    suite = tmp_path / "tiny_slurm.yaml"
    suite.write_text(SUITE)
    database = tmp_path / "out" / "results.sqlite"
    arguments = ["run-all", "--suite", suite, "--data", f"cityscapes={data}", "--results", database, "--device", "cpu",
                 "--launcher", "slurm", "--slurm-executor", "local", "--gpus-per-node", "0", "--tasks-per-node", "2",
                 "--time", "5", "--no-report"]
    environment = _environment()
    first = run_cli(*arguments, env=environment)
    logs = "\n".join(path.read_text() for path in (tmp_path / "out" / "slurm").rglob("*.err")) if first.returncode else ""
    assert first.returncode == 0, first.stdout + first.stderr + logs
    assert "1 entries, 0 already complete, 1 run, 0 failed" in first.stdout and "ran 1 job(s)" in first.stdout
    with ResultsStore(database) as store:
        (record,) = store.records()
    assert record.row == "fpn_r18" and record.device == "cpu" and 0.0 <= record.metrics["mIoU"] <= 1.0
    assert "band_3" in record.metrics
    assert not (tmp_path / "out" / "checkpoints").exists() or not any((tmp_path / "out" / "checkpoints").iterdir())
    again = run_cli(*arguments, env=environment)
    assert again.returncode == 0 and "1 already complete, 0 run" in again.stdout and "job" not in again.stdout
    shutil.rmtree(tmp_path / "out" / "slurm", ignore_errors=True)


if __name__ == "__main__":
    worker(Path(sys.argv[1]), Path(sys.argv[2]))
