"""Hostile input and faults (issue 16): every case fails in one line naming the file or option, exit status 2,
and nothing written earlier is lost.

One parametrised test per category: options checked when parsed, damaged results stores, read-only readers
of the store, atomic exports, a full disk while writing checkpoints, data or exports, a report or COCO export
failing or killed mid-way (staged, swapped into place), two processes generating the same data cache at once,
and `profile --all` running out of memory. Two `run-all` on one store: tests/test_lease.py.
"""

from __future__ import annotations

import errno
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from alignbench.bench import profiling
from alignbench.bench.cli import main
from alignbench.bench.data import cache, synthetic
from alignbench.bench.data.synthetic import SynthSpec, read_synth_spec
from alignbench.bench.errors import UserError
from alignbench.bench.io import write_atomic, write_json_atomic
from alignbench.bench.results import ResultRecord, ResultsStore, load_results
from alignbench.bench.train import save_atomic

TINY = SynthSpec(n_train=1, n_val=1, size=(64, 128), seed=3)


def one_error_line(capsys) -> str:
    """The command's stderr, which must be exactly one line."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def run_main(capsys, *args) -> tuple[int, str]:
    """`alignbench ARGS` in this process: (exit status, its one stderr line or '')."""
    try:
        status = main([str(arg) for arg in args])
    except SystemExit as exit_:  # argparse rejects an option
        status = exit_.code
    return status, one_error_line(capsys) if status else ""


def make_store(path: Path, rows: int = 40) -> Path:
    with ResultsStore(path) as store:
        for index in range(rows):
            store.add(ResultRecord(
                suite="s", row=f"row {index}", seed=0, model="rt_fpn_r18", task="semantic", budget="smoke", data="synthetic",
                config_hash="h", config={"a": index}, metrics={"mIoU": index / rows, "bands": {"3": 0.5}},
                started_at="2024-01-01T00:00:00", finished_at="2024-01-01T00:01:00", duration_s=60.0,
            ))
    return path


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# --- options: rejected when the arguments are parsed, before any work -------------------------------------


def _options_cases(tmp: Path) -> list[tuple[list, str]]:
    a_file = tmp / "a-file"
    a_file.write_text("x")
    return [
        (["train", "rt_fpn_r18", "--device", "tpu"], "--device: expected cpu, cuda or cuda:N"),
        (["train", "rt_fpn_r18", "--device", "cuda:x"], "--device: expected cpu, cuda or cuda:N"),
        (["run-all", "--device", "gpu"], "--device: expected cpu, cuda or cuda:N"),
        (["profile", "rt_fpn_r18", "--device", "metal"], "--device: expected cpu, cuda or cuda:N"),
        (["train", "rt_fpn_r18", "--seed", "-1"], "--seed: expected a seed"),
        (["train", "rt_fpn_r18", "--seed", "1.5"], "--seed: expected a seed"),
        (["data", "synth", "--out", tmp / "d", "--seed", "-3"], "--seed: expected a seed"),
        (["run-all", "--seeds", "0,-1"], "--seeds: expected comma-separated seeds"),
        (["run-all", "--seeds", str(2**32)], "--seeds: expected comma-separated seeds"),
        (["report", "--budget", "huge"], "--budget: unknown budget 'huge'; choose from smoke, miniature, short, paper"),
        (["run-all", "--budget", "Smoke"], "--budget: unknown budget 'Smoke'"),
        (["train", "rt_fpn_r18", "--budget", ""], "--budget: unknown budget ''"),
        (["train", "rt_fpn_r18", "--json", tmp / "missing" / "scores.json"], "does not exist"),
        (["train", "rt_fpn_r18", "--json", tmp], "is a folder, expected a file name"),
        (["train", "rt_fpn_r18", "--json", a_file / "scores.json"], "is not a folder"),
        (["train", "rt_fpn_r18", "--out", a_file / "checkpoints"], "is not a folder"),
        (["results", "--out", tmp / "missing" / "x.csv"], "does not exist"),
        (["results", "--out", tmp], "is a folder"),
        (["report", "--out", a_file], "is not a folder"),
        (["run-all", "--out", a_file / "sub"], "is not a folder"),
        (["run-all", "--results", tmp], "is a folder, expected a database file name"),
        (["run-all", "--results", a_file / "results.sqlite"], "is not a folder"),
        (["profile", "--all", "--out", tmp / "missing" / "table.txt"], "does not exist"),
        (["data", "coco", "--root", tmp, "--out", a_file], "is not a folder"),
    ]


@pytest.mark.parametrize("case", range(24))
def test_bad_options_are_rejected_when_parsed(case, tmp_path, capsys, monkeypatch):
    """argparse validators (bench/commands/common.py): no handler runs, so no work starts."""
    cases = _options_cases(tmp_path)
    assert len(cases) == 24
    args, message = cases[case]
    monkeypatch.setattr("alignbench.bench.cli.logging.basicConfig", lambda **_: pytest.fail("a handler ran"))
    status, line = run_main(capsys, *args)
    assert status == 2 and message in line, line
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("option", [["train", "rt_fpn_r18", "--json"], ["results", "--out"], ["profile", "--all", "--out"]])
def test_read_only_output_folder_is_rejected_when_parsed(option, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        status, line = run_main(capsys, *option, folder / "out.json")
    finally:
        folder.chmod(0o755)
    assert status == 2 and "cannot be written" in line


# --- results store: damage is detected when the store is opened, and nothing is written -------------------


def _truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _random_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2048] = random.Random(0).randbytes(2048)
    path.write_bytes(bytes(data))


def _zero_table_pages(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page * 2 : page * 3] = bytes(page)  # the third page: part of a table
    path.write_bytes(bytes(data))


def _truncated_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:60])


def _dropped_table(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE complexity")


@pytest.mark.parametrize(
    "damage, message",
    [
        (_truncate_half, "results database"),
        (_random_middle, "results database"),
        (_zero_table_pages, "results database"),
        (_truncated_header, "truncated SQLite header"),
        (_dropped_table, "missing table complexity"),
    ],
    ids=["truncated", "random-bytes-in-the-middle", "zeroed-page", "truncated-header", "dropped-table"],
)
def test_damaged_store_is_refused_in_one_line_and_left_untouched(damage, message, tmp_path, capsys):
    store = make_store(tmp_path / "results.sqlite", rows=200)
    damage(store)
    before = store.read_bytes()
    for read_only in (False, True):
        with pytest.raises(UserError, match=message) as raised:
            ResultsStore(store, read_only=read_only)
        assert str(store) in str(raised.value)
    for command in (["results", "--results", store], ["report", "--results", store, "--out", tmp_path / "report"]):
        status, line = run_main(capsys, *command)
        assert status == 2 and str(store) in line and message in line
    assert store.read_bytes() == before  # never written into


@pytest.mark.parametrize("wal", [b"", random.Random(1).randbytes(5000)], ids=["zero-length-wal", "garbage-wal"])
def test_stores_with_an_empty_or_garbage_wal_are_valid(wal, tmp_path):
    """A WAL whose frames do not check out is ignored by SQLite: the store holds what the main file holds."""
    store = make_store(tmp_path / "results.sqlite")
    (tmp_path / "results.sqlite-wal").write_bytes(wal)
    assert len(load_results(store)) == 40
    with ResultsStore(store) as writable:
        assert len(writable.records()) == 40


def test_readers_do_not_write_nor_switch_to_wal(tmp_path, capsys):
    store = make_store(tmp_path / "results.sqlite")
    with sqlite3.connect(store) as connection:  # as if copied from a machine that used rollback journals
        connection.execute("PRAGMA journal_mode = DELETE")
    before = store.read_bytes()
    assert before[18:20] == b"\x01\x01"  # the header's legacy (non-WAL) journal format
    assert run_main(capsys, "results", "--results", store, "--out", tmp_path / "export.csv")[0] == 0
    assert run_main(capsys, "report", "--results", store, "--out", tmp_path / "report")[0] == 0
    assert store.read_bytes() == before
    assert len((tmp_path / "export.csv").read_text().splitlines()) == 41


@pytest.mark.skipif(os.geteuid() == 0, reason="root can create files in a read-only folder")
def test_store_in_a_read_only_folder_is_read(tmp_path, capsys):
    store = make_store(tmp_path / "media" / "results.sqlite")
    before = store.read_bytes()
    store.parent.chmod(0o555)
    try:
        status, _ = run_main(capsys, "results", "--results", store, "--format", "json")
        rows = json.loads(capsys.readouterr().out)
    finally:
        store.parent.chmod(0o755)
    assert status == 0 and len(rows) == 40 and store.read_bytes() == before
    assert files_in(store.parent) == ["results.sqlite"]


@pytest.mark.parametrize("wal", [None, b"", b"x" * 100], ids=["no-wal", "empty-wal", "wal-with-entries"])
def test_store_that_sqlite_cannot_open_read_only_is_read_as_immutable(wal, tmp_path, monkeypatch):
    """Read-only media or a full disk (SQLite cannot create its -shm index): the main file is read as
    immutable, unless a write-ahead log holds entries the main file lacks."""
    store = make_store(tmp_path / "results.sqlite")
    if wal is not None:
        (tmp_path / "results.sqlite-wal").write_bytes(wal)
    real_connect = sqlite3.connect

    def connect(database, *args, **kwargs):
        if str(database).endswith("?mode=ro"):
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    if wal:
        with pytest.raises(UserError, match="write-ahead log results.sqlite-wal holds entries"):
            load_results(store)
    else:
        assert len(load_results(store)) == 40


@pytest.mark.parametrize("patch, message", [(b"\xff\xfe\xfd", "Could not decode to UTF-8"), (b"}}}", "damaged entry id")],
                         ids=["bad-utf8", "bad-json"])
def test_damage_inside_a_value_is_one_line(patch, message, tmp_path, capsys):
    """Damage no page check can see (inside a stored value) is reported when the entries are read."""
    store = make_store(tmp_path / "results.sqlite")
    data = bytearray(store.read_bytes())
    where = data.find(b'"mIoU": 0.5')
    data[where : where + 3] = patch
    store.write_bytes(bytes(data))
    status, line = run_main(capsys, "results", "--results", store)
    assert status == 2 and str(store) in line and message in line


def test_read_only_store_refuses_writes(tmp_path):
    store = make_store(tmp_path / "results.sqlite")
    with ResultsStore(store, create=False) as reader, pytest.raises(RuntimeError, match="read-only"):
        reader.add_complexity("m", (1, 1), "code", {})


# --- full disk: one line naming the path, no partial or temporary file, the last good file kept ----------


def _no_space(path=None):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def _full_disk_checkpoint(tmp: Path, monkeypatch):
    target = tmp / "run" / "last.pt"
    save_atomic({"iteration": 5, "model": {"w": torch.ones(3)}}, target)

    def save_part_then_fail(payload, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise _no_space()

    monkeypatch.setattr(torch, "save", save_part_then_fail)
    return lambda: save_atomic({"iteration": 10, "model": {"w": torch.zeros(3)}}, target), target, \
        lambda: torch.load(target, weights_only=True)["iteration"] == 5


def _full_disk_json(tmp: Path, monkeypatch):
    target = tmp / "out" / "scores.json"
    write_json_atomic(target, {"old": 1})

    def write_part_then_fail(handle):
        handle.write('{"new": ')
        raise _no_space()

    return lambda: write_atomic(target, write_part_then_fail), target, lambda: json.loads(target.read_text()) == {"old": 1}


def _full_disk_cache(tmp: Path, monkeypatch):
    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp / "cache"))
    target = cache.synthetic_root(TINY)
    target.parent.mkdir(parents=True)  # the cache folder itself is kept
    _fail_png_writes_after(monkeypatch, 3, synthetic)
    return lambda: cache.ensure_synthetic(TINY, progress=False), target, lambda: not target.exists()


def _full_disk_overwrite(tmp: Path, monkeypatch):
    target = tmp / "data"
    cache.prepare_synthetic_folder(target, TINY, progress=False)
    other = SynthSpec(n_train=2, n_val=1, size=(64, 128), seed=4)
    _fail_png_writes_after(monkeypatch, 5, synthetic)
    return lambda: cache.prepare_synthetic_folder(target, other, overwrite=True, progress=False), target, \
        lambda: read_synth_spec(target) == TINY.to_json() and len(list(target.rglob("*.png"))) == 8


def _fail_png_writes_after(monkeypatch, count: int, module=None) -> None:
    """`module`'s write_png (default bench.io's) writes `count` files, then half a file and fails as on a full disk."""
    from alignbench.bench import io

    module = module or io
    real_write_png, written = io.write_png, []

    def write_png(path, array):
        if len(written) == count:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(b"\x89PNG half")
            raise _no_space()  # a failing write() names no file
        written.append(path)
        real_write_png(path, array)

    monkeypatch.setattr(module, "write_png", write_png)


@pytest.mark.parametrize("scenario", [_full_disk_checkpoint, _full_disk_json, _full_disk_cache, _full_disk_overwrite],
                         ids=["checkpoint", "json", "data-cache", "data-synth-overwrite"])
def test_full_disk_names_the_path_and_keeps_the_last_good_file(scenario, tmp_path, monkeypatch):
    write, target, last_good_kept = scenario(tmp_path, monkeypatch)
    listing_before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(UserError, match="No space left on device") as raised:
        write()
    assert str(target) in str(raised.value) and "\n" not in str(raised.value)
    assert last_good_kept()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == listing_before  # no partial or temp file


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EDQUOT])
def test_storage_failure_anywhere_is_one_line(code, tmp_path, capsys, monkeypatch):
    """A full disk or read-only media met outside our own writers (here: the report's renderer)."""
    store = make_store(tmp_path / "results.sqlite")
    figure = tmp_path / "report" / "figures" / "a.png"

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(figure))

    monkeypatch.setattr("alignbench.bench.reporting.write_report", fail)
    status, line = run_main(capsys, "report", "--results", store, "--out", tmp_path / "report")
    assert status == 2 and line == f"alignbench: error: {figure}: {os.strerror(code)}"


def test_checkpoint_on_a_real_size_limited_disk(tmp_path):
    """A real write failure inside torch.save (RLIMIT_FSIZE makes writes past 64 kB fail with EFBIG):
    torch reports it as a RuntimeError while closing its zip writer; it still becomes one line."""
    script = textwrap.dedent("""
        import resource, signal, sys, torch
        from pathlib import Path
        from alignbench.bench.errors import UserError
        from alignbench.bench.train import save_atomic
        target = Path(sys.argv[1])
        save_atomic({"w": torch.ones(10)}, target)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        try:
            save_atomic({"w": torch.zeros(100_000)}, target)
        except UserError as error:
            print(error)
        print(torch.load(target, weights_only=True)["w"].numel())
    """)
    target = tmp_path / "last.pt"
    result = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{target}: cannot write the checkpoint (File too large)", "10"]
    assert files_in(tmp_path) == ["last.pt"]


def test_damaged_training_checkpoint_is_one_line(tmp_path):
    from alignbench.bench.train import load_checkpoint

    damaged = tmp_path / "last.pt"
    damaged.write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(UserError, match="damaged checkpoint"):
        load_checkpoint(damaged, torch.device("cpu"))
    torch.save({"model": {}}, damaged)
    with pytest.raises(UserError, match="not a training checkpoint"):
        load_checkpoint(damaged, torch.device("cpu"))


# --- report and COCO export: written aside, swapped into place; a failure leaves the previous files whole ------


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with its bytes (None for a folder)."""
    return {str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes() for path in sorted(folder.rglob("*"))}


def _fail_a_figure_midway(monkeypatch, error: BaseException) -> None:
    """The third speed figure writes half a PNG into the figures folder, then fails with `error`."""
    calls = []

    def speed_figure(suite, paper, results, directory):
        calls.append(suite.name)
        if len(calls) == 3:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "half.png").write_bytes(b"\x89PNG half")
            raise error
        return None

    monkeypatch.setattr("alignbench.reports.report.speed_figure", speed_figure)


def _fail_writing_the_tex_file(monkeypatch, error: BaseException) -> None:
    """report.md is written, then report.tex fails half-way."""
    real_write_text = Path.write_text

    def write_text(self, text, *args, **kwargs):
        if self.name.startswith(".report.tex"):
            real_write_text(self, text[: len(text) // 2], *args, **kwargs)
            raise error
        return real_write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


@pytest.mark.parametrize("fail", [_fail_a_figure_midway, _fail_writing_the_tex_file], ids=["figure", "tex-file"])
@pytest.mark.parametrize("error", [_no_space(), RuntimeError("a bug in a figure")], ids=["full-disk", "bug"])
def test_report_failing_midway_keeps_the_previous_report(fail, error, tmp_path, capsys, monkeypatch):
    store = make_store(tmp_path / "db" / "results.sqlite")  # its -wal and -shm files elsewhere
    report = tmp_path / "report"
    assert run_main(capsys, "report", "--results", store, "--out", report)[0] == 0
    capsys.readouterr()
    make_store(store, rows=41)  # one more entry: the new report would differ
    before, listing = snapshot(report), files_in(tmp_path)
    fail(monkeypatch, error)
    if isinstance(error, OSError):  # the machine's state: one line naming the report folder, exit status 2
        status, line = run_main(capsys, "report", "--results", store, "--out", report)
        assert status == 2 and line == f"alignbench: error: {report}: cannot write (No space left on device); left as it was"
    else:  # a bug is a traceback, but still leaves the previous report
        with pytest.raises(RuntimeError, match="a bug"):
            main(["report", "--results", str(store), "--out", str(report)])
    assert snapshot(report) == before and "report.md" in before
    assert files_in(tmp_path) == listing  # no staging folder left behind


def test_report_replaces_its_own_files_and_keeps_the_others(tmp_path, capsys):
    store = make_store(tmp_path / "db" / "results.sqlite")  # its -wal and -shm files elsewhere
    report = tmp_path / "report"
    (report / "figures").mkdir(parents=True)
    (report / "figures" / "stale.png").write_bytes(b"an old figure")
    (report / "notes.txt").write_text("the user's own file")
    (report / "report.md").write_text("an old report")
    status, _ = run_main(capsys, "report", "--results", store, "--out", report, "--format", "md")
    printed = capsys.readouterr().out.split()
    assert status == 0 and printed == [str(report / "report.md")]
    assert (report / "notes.txt").read_text() == "the user's own file"
    assert "40 stored entries" in (report / "report.md").read_text()
    assert not (report / "figures" / "stale.png").exists()  # the figures folder is the new report's
    assert files_in(tmp_path) == ["db", "report"]


def test_report_into_a_symbolic_link_to_a_folder(tmp_path, capsys):
    """The link is kept and the report written into its folder (staged beside that folder, on its file system)."""
    store = make_store(tmp_path / "db" / "results.sqlite")
    (tmp_path / "elsewhere" / "real-report").mkdir(parents=True)
    (tmp_path / "report").symlink_to(tmp_path / "elsewhere" / "real-report")
    for _ in range(2):  # into the empty folder, then over the first report
        assert run_main(capsys, "report", "--results", store, "--out", tmp_path / "report")[0] == 0
    assert (tmp_path / "report").is_symlink() and (tmp_path / "elsewhere" / "real-report" / "report.md").is_file()
    assert files_in(tmp_path / "elsewhere") == ["real-report"]


def test_staging_folders_of_killed_processes_are_removed(tmp_path, capsys):
    """A report or export killed mid-way leaves its staging folder; the next one removes it (this host, process gone)."""
    store = make_store(tmp_path / "db" / "results.sqlite")  # its -wal and -shm files elsewhere
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    abandoned = tmp_path / f".report.{host}-{dead}.abc123.partial"
    running = tmp_path / f".report.{host}-{os.getpid()}.def456.partial"  # a live process's: left alone
    elsewhere = tmp_path / f".report.otherhost-{dead}.ghi789.partial"  # another host's: cannot be checked, left alone
    for folder in (abandoned, running, elsewhere):
        (folder / "figures").mkdir(parents=True)
    assert run_main(capsys, "report", "--results", store, "--out", tmp_path / "report")[0] == 0
    assert files_in(tmp_path) == sorted([running.name, elsewhere.name, "db", "report"])


def _export_over_a_previous_one(tree: Path, out: Path) -> dict:
    from alignbench.bench.data.coco import export_coco

    export_coco(tree, out, "val")
    return snapshot(out)


@pytest.mark.parametrize("previous", [True, False], ids=["over-a-previous-export", "first-export"])
@pytest.mark.parametrize("where", ["third-png", "panoptic-json"])
def test_coco_export_failing_midway_leaves_no_partial_files(previous, where, small_tree, tmp_path, capsys, monkeypatch):
    from alignbench.bench.data import coco

    out = tmp_path / "coco"
    before = _export_over_a_previous_one(small_tree, out) if previous else {}
    if where == "third-png":
        _fail_png_writes_after(monkeypatch, 2, module=coco)
    else:
        real_json_text = coco.json_text

        def json_text(payload):  # the PNGs and the instances JSON are written by then
            if any("segments_info" in annotation for annotation in payload["annotations"]):
                raise _no_space()
            return real_json_text(payload)

        monkeypatch.setattr(coco, "json_text", json_text)
    status, line = run_main(capsys, "data", "coco", "--root", small_tree, "--out", out, "--split", "val")
    assert status == 2 and line == f"alignbench: error: {out / 'annotations'}: cannot write (No space left on device); left as it was"
    assert snapshot(out) == before  # the previous export whole, or nothing at all
    assert files_in(tmp_path) == ["coco"]  # no staging folder left behind


def test_killed_coco_export_leaves_nothing_a_later_run_takes_as_complete(small_tree, tmp_path):
    import multiprocessing

    from alignbench.bench.data import coco
    from alignbench.bench.data.catalog import get_dataset

    out = tmp_path / "tree"
    out.mkdir()
    for name in ("gtFine", "leftImg8bit"):
        (out / name).symlink_to(small_tree / name)

    def slow_export() -> None:
        real_write_png = coco.write_png

        def write_png(path, array):
            real_write_png(path, array)
            time.sleep(60 if len(list(Path(path).parent.iterdir())) >= 2 else 0)  # killed while it waits

        coco.write_png = write_png  # in the child only
        coco.export_coco(out, out / "coco", "val")

    child = multiprocessing.get_context("fork").Process(target=slow_export)
    child.start()
    deadline = time.monotonic() + 60
    while len(list((out / "coco").glob(".annotations.*.partial/panoptic_val/*.png"))) < 2:
        assert child.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    child.kill()
    child.join()
    assert files_in(out / "coco") == [next((out / "coco").glob(".annotations.*")).name]  # only the staging folder
    split = get_dataset("synthetic").coco_files(out, "val")  # finds no export, so exports again
    assert files_in(out / "coco") == ["annotations"]  # the killed process's staging folder removed
    assert len(json.loads(split.panoptic_json.read_text())["images"]) == len(list(split.panoptic_dir.iterdir())) == 4


# --- concurrency: two processes generating the same data cache ---------------------------------------------

_GENERATE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from alignbench.bench.data.cache import ensure_synthetic
    from alignbench.bench.data.synthetic import SynthSpec
    go = Path(sys.argv[1])
    while not go.exists():
        time.sleep(0.01)
    print(ensure_synthetic(SynthSpec(n_train=2, n_val=1, size=(64, 128), seed=3), progress=False))
""")


@pytest.mark.parametrize("leftover", [None, "incomplete-dataset", "abandoned-staging"])
def test_two_processes_generate_the_same_cache_at_once(leftover, tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp_path / "cache"))
    spec = SynthSpec(n_train=2, n_val=1, size=(64, 128), seed=3)
    root = cache.synthetic_root(spec)
    root.parent.mkdir(parents=True)
    if leftover == "incomplete-dataset":  # e.g. copied in part: no synth.json
        (root / "gtFine").mkdir(parents=True)
    elif leftover == "abandoned-staging":  # a process of this host that was killed while generating
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        (root.parent / f".{root.name}.{socket.gethostname()}-{dead.stdout.strip()}.abc123.partial" / "gtFine").mkdir(parents=True)
    go = tmp_path / "go"
    processes = [
        subprocess.Popen([sys.executable, "-c", _GENERATE, str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    time.sleep(1.0)  # both have imported and wait for the start signal
    go.touch()
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
        assert stdout.strip() == str(root)
    assert read_synth_spec(root) == spec.to_json()
    assert len(list(root.rglob("*.png"))) == 3 * 4
    assert files_in(root.parent) == [root.name]  # no staging or old folder left


# --- profile --all with a model that runs out of memory -----------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 36.00 GiB"),
        MemoryError(),
        RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to allocate 38654705664 bytes"),
    ],
    ids=["torch-out-of-memory", "python-memory-error", "cpu-allocator"],
)
def test_profile_all_marks_the_model_out_of_memory_and_completes(failure, tmp_path, monkeypatch, capsys):
    from alignbench import models

    everything = models.list_models
    chosen = ["rt_fpn_r18", "rt_fapn_r18", "sfnet_r18_fcn"]
    monkeypatch.setattr(models, "list_models", lambda task=None: [i for i in everything(task) if i.name in chosen])
    from alignbench.bench import io

    real_write_atomic, saved = io.write_atomic, []

    def write_and_keep_a_copy(path, write, binary=False):
        real_write_atomic(path, write, binary)
        saved.append(Path(path).read_text())

    monkeypatch.setattr(io, "write_atomic", write_and_keep_a_copy)

    def complexity_at(name, size, model=None):
        if name == "rt_fapn_r18":
            raise failure
        return profiling.Complexity(tuple(size), 2_000_000, {}, 3_000_000_000, {"conv": 3_000_000_000}, 10**8, {})

    monkeypatch.setattr(profiling, "complexity_at", complexity_at)
    out = tmp_path / "table.txt"
    status, _ = run_main(capsys, "profile", "--all", "--task", "semantic", "--input", "64x128", "--out", out)
    table = capsys.readouterr().out
    assert status == 0
    rows = {line.split()[0]: line for line in table.splitlines() if line.split() and line.split()[0] in chosen}
    assert set(rows) == set(chosen)
    assert rows["rt_fapn_r18"].rstrip().endswith("out of memory at 64x128")
    assert "3.00" in rows["rt_fpn_r18"] and "3.00" in rows["sfnet_r18_fcn"]  # the other models are counted
    assert out.read_text() == table
    model_rows = [sum(line.split()[0] in chosen for line in text.splitlines() if line.split()) for text in saved]
    assert model_rows == [1, 2, 3]  # the table is written as it goes


def test_profile_keeps_the_rows_measured_before_a_crash(tmp_path, monkeypatch, capsys):
    from alignbench import models

    everything = models.list_models
    monkeypatch.setattr(models, "list_models", lambda task=None: [i for i in everything(task) if i.name in ("rt_fpn_r18", "rt_fapn_r18")])

    def complexity_at(name, size, model=None):
        if name == "rt_fapn_r18":
            raise ValueError("a bug, not a lack of memory")
        return profiling.Complexity(tuple(size), 2_000_000, {}, 3_000_000_000, {"conv": 3_000_000_000}, 10**8, {})

    monkeypatch.setattr(profiling, "complexity_at", complexity_at)
    out = tmp_path / "rows.json"
    with pytest.raises(ValueError, match="a bug"):
        main(["profile", "--all", "--task", "semantic", "--input", "64x128", "--json", "--out", str(out)])
    assert [row["name"] for row in json.loads(out.read_text())] == ["rt_fpn_r18"]
    assert [row["name"] for row in json.loads(capsys.readouterr().out)] == ["rt_fpn_r18"]
