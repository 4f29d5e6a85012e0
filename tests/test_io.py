"""PNG reading with clear errors, and atomic JSON writing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from alignbench.bench.errors import UserError
from alignbench.bench.io import read_png, write_json_atomic, write_png


def test_label_maps_round_trip_in_8_and_16_bit(tmp_path):
    labels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    instances = (np.arange(64, dtype=np.uint16) * 997).reshape(8, 8)
    write_png(tmp_path / "l.png", labels)
    write_png(tmp_path / "i.png", instances)
    np.testing.assert_array_equal(read_png(tmp_path / "l.png"), labels)
    read = read_png(tmp_path / "i.png")
    assert read.dtype == np.uint16
    np.testing.assert_array_equal(read, instances)


def test_palette_png_yields_indices_like_pillow(tmp_path):
    indices = np.random.default_rng(0).integers(0, 34, (6, 9)).astype(np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    image.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_png(tmp_path / "p.png"), indices)
    np.testing.assert_array_equal(read_png(tmp_path / "p.png"), np.array(Image.open(tmp_path / "p.png")))


def test_rgb_images_read_as_rgb(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    write_png(tmp_path / "rgb.png", rgb)
    np.testing.assert_array_equal(read_png(tmp_path / "rgb.png", channels=3), rgb)
    assert np.array(Image.open(tmp_path / "rgb.png"))[0, 0].tolist() == [200, 0, 0]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a PNG file"),
        (b"GIF89a....", "not a PNG file"),
        (b"\x89PNG\r\n\x1a\n", "no IHDR header"),
    ],
)
def test_broken_files_raise_one_clear_error(tmp_path, content, message):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_png(path)


def test_truncated_and_corrupt_pngs(tmp_path):
    write_png(tmp_path / "ok.png", np.random.default_rng(1).integers(0, 34, (40, 40)).astype(np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated PNG"):
        read_png(tmp_path / "cut.png")
    with pytest.raises(UserError, match="file not found"):
        read_png(tmp_path / "absent.png")
    with pytest.raises(UserError, match="is a directory"):
        read_png(tmp_path)


def test_channel_mismatch_is_named(tmp_path):
    write_png(tmp_path / "rgb.png", np.zeros((4, 4, 3), np.uint8))
    write_png(tmp_path / "grey.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match="expected a single-channel PNG, found RGB"):
        read_png(tmp_path / "rgb.png")
    with pytest.raises(UserError, match="expected an RGB PNG, found greyscale"):
        read_png(tmp_path / "grey.png", channels=3)


def test_json_is_atomic_and_nan_becomes_null(tmp_path):
    path = tmp_path / "out" / "scores.json"
    write_json_atomic(path, {"mIoU": np.float64(0.5), "iIoU": math.nan, "n": np.int64(3), "list": (1.0, float("inf"))})
    assert json.loads(path.read_text()) == {"mIoU": 0.5, "iIoU": None, "n": 3, "list": [1.0, None]}
    assert [p.name for p in path.parent.iterdir()] == ["scores.json"]  # no temporary left behind


def test_failed_json_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "scores.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]
