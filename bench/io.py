"""File input and output with clear errors: PNG label maps and images, atomic file writes (JSON, exports),
staged folders (reports, COCO exports: written aside, then swapped into place).

PNGs are checked before decoding (signature, header, final IEND chunk) so that a truncated, corrupt or
wrongly-shaped file becomes one `UserError` line naming the file, instead of a decoder's stderr noise.
Decoding goes through OpenCV, which is faster than Pillow on 16-bit maps; palette PNGs go through Pillow
because OpenCV expands a palette to colours while label maps need the palette indices.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import shutil
import socket
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from alignbench.bench.errors import UserError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE_NAMES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}
_SINGLE_CHANNEL_TYPES = (0, 3)
_COLOUR_TYPES = (2, 6)


@dataclass(frozen=True)
class PngHeader:
    """The fields of a PNG's IHDR chunk that decide how it is decoded."""

    width: int
    height: int
    bit_depth: int
    color_type: int

    @property
    def kind(self) -> str:
        return _COLOR_TYPE_NAMES.get(self.color_type, f"colour type {self.color_type}")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a PNG file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from None


def parse_png_header(data: bytes, path: Path) -> PngHeader:
    """Validate signature, IHDR and the trailing IEND chunk; return the header."""
    if not data.startswith(PNG_SIGNATURE):
        raise UserError(f"{path}: not a PNG file")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise UserError(f"{path}: truncated or corrupt PNG (no IHDR header)")
    width, height, bit_depth, color_type = struct.unpack(">IIBB", data[16:26])
    if width == 0 or height == 0:
        raise UserError(f"{path}: PNG has zero size ({width}x{height})")
    if b"IEND" not in data[-64:]:
        raise UserError(f"{path}: truncated PNG (no IEND chunk at the end)")
    return PngHeader(width, height, bit_depth, color_type)


def read_png(path: str | os.PathLike, channels: int = 1) -> np.ndarray:
    """Read a PNG as an HxW label map (channels=1) or an HxWx3 RGB image (channels=3).

    Label maps keep their stored integer type (uint8 or uint16); palette PNGs yield their indices, as
    Pillow (and so cityscapesscripts) reads them. RGBA images lose their alpha channel.
    """
    path = Path(path)
    data = _read_bytes(path)
    header = parse_png_header(data, path)
    if channels == 1:
        if header.color_type not in _SINGLE_CHANNEL_TYPES:
            raise UserError(f"{path}: expected a single-channel PNG, found {header.kind}")
        if header.color_type == 3:
            array = _decode_with_pillow(data, path)
        else:
            array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    elif channels == 3:
        if header.color_type not in _COLOUR_TYPES:
            raise UserError(f"{path}: expected an RGB PNG, found {header.kind}")
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if array is not None:
            array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    else:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if array is None:
        raise UserError(f"{path}: corrupt PNG data (decoding failed)")
    if array.shape[:2] != (header.height, header.width):
        raise UserError(f"{path}: decoded size {array.shape[:2]} differs from the header")
    return array


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An RGB photo (PNG through `read_png`'s checks; JPEG and others through OpenCV) as HxWx3 uint8."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        return read_png(path, channels=3)
    image = cv2.imdecode(np.frombuffer(_read_bytes(path), np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode_with_pillow(data: bytes, path: Path) -> np.ndarray:
    from PIL import Image  # here: Pillow loads only for palette PNGs (VOC's), not for the eval commands' maps

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.array(image)
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: corrupt PNG data ({error})") from None


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an HxW (uint8/uint16) map or an HxWx3/4 RGB(A) uint8 image as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        conversion = cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        array = cv2.cvtColor(np.ascontiguousarray(array), conversion)
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    path.write_bytes(encoded.tobytes())


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars / arrays and paths to JSON types; NaN and infinities become null."""
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_atomic(path: str | os.PathLike, write: Callable[[IO], Any], binary: bool = False) -> None:
    """Write a file through a temporary file in the same folder, fsync and a rename.

    `write(handle)` writes the content. Readers never see half a file; on a full disk, a kill or any
    error the temporary file is removed and an earlier file at `path` is kept as it was. An OSError
    becomes one `UserError` line naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            "wb" if binary else "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False,
            **({} if binary else {"encoding": "utf-8", "newline": ""}),
        )
    except OSError as error:
        raise UserError(f"{path}: cannot write ({error.strerror or error})") from None
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~current_umask())  # tempfile made it private; the result gets the usual permissions
        os.replace(handle.name, path)
    except OSError as error:
        Path(handle.name).unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write ({error.strerror or error})") from None
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_text(payload: Any) -> str:
    """`payload` as indented JSON text (numpy values and paths converted; NaN refused)."""
    return json.dumps(to_jsonable(payload), indent=2, allow_nan=False) + "\n"


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON atomically (`write_atomic`): readers never see half a file."""
    text = json_text(payload)
    write_atomic(path, lambda handle: handle.write(text))


# --- staged folders ------------------------------------------------------------------------------------

STAGING_SUFFIX = ".partial"


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike, last: str | None = None) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; when the block succeeds, its entries replace those of the same
    name in `target` (created if missing). On any error the staging folder is removed and `target` is left as it was.

    Nothing under `target` changes while the block writes, so an earlier report or export stays whole until the new
    one is complete; entries of `target` that the block did not write are kept. Each entry is swapped by a rename
    (a file: one `os.replace`; a folder: the old one renamed aside, then the new one in), under an exclusive lock on
    the parent folder so that two processes never interleave their swaps. `last` names an entry that marks the others
    complete (e.g. the COCO panoptic JSON): it is removed from `target` before the others are swapped and put in last,
    so a swap cut short never leaves it beside a mix of old and new files.

    The staging folder's name holds the host and process id; those left by a killed process of this host are removed
    by the next call. An OSError (full disk, read-only media) becomes one `UserError` line naming `target`.
    """
    target = Path(target)
    place = target.resolve()  # a symbolic link's folder: staged beside it, on its file system
    try:
        place.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned_staging(place)
        staging = Path(tempfile.mkdtemp(dir=place.parent, prefix=f".{place.name}.{host_and_pid()}.", suffix=STAGING_SUFFIX))
    except OSError as error:
        raise UserError(f"{target}: cannot write ({error.strerror or error})") from None
    try:
        yield staging
        staging.chmod(0o777 & ~current_umask())  # mkdtemp made it private; the result gets the usual permissions
        with exclusive_lock(place.parent):
            _swap_into_place(staging, place, last)
    except OSError as error:
        raise UserError(f"{target}: cannot write ({error.strerror or error}); left as it was") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # what was not moved, and the old entries moved aside into it


def _swap_into_place(staging: Path, target: Path, last: str | None) -> None:
    """Move `staging`'s entries into `target` (see `staged_folder`); the old entries go into `staging`."""
    if not target.exists():
        os.rename(staging, target)  # the whole folder at once
        return
    if not target.is_dir():
        raise UserError(f"{target}: exists and is not a folder; left untouched")
    aside = Path(tempfile.mkdtemp(dir=staging, prefix=".old."))
    names = sorted(entry.name for entry in staging.iterdir() if entry != aside)
    if last in names:
        names.remove(last)
        (target / last).unlink(missing_ok=True)
        names.append(last)
    for name in names:
        new, old = staging / name, target / name
        if new.is_dir() and (old.exists() or old.is_symlink()):  # a folder: the old entry aside, then the new one in
            os.rename(old, aside / name)
            try:
                os.rename(new, old)
            except OSError:
                os.rename(aside / name, old)  # put the previous one back
                raise
        else:
            os.replace(new, old)  # a file over a file: atomic (over a folder: refused by the OS)


@contextlib.contextmanager
def exclusive_lock(folder: Path) -> Iterator[None]:
    """fcntl.flock on `folder` itself (no lock file left behind); released when the descriptor closes."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def host_and_pid() -> str:
    """Host name and process id, so that a killed process's staging folders can be recognised."""
    return f"{socket.gethostname()}-{os.getpid()}"


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (signal 0 checks without sending anything); a zombie (ended,
    not yet reaped by its parent) is not running. Linux's /proc tells zombies apart; elsewhere they count as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]  # the field after "(command name)"
    except (OSError, IndexError):
        return True
    return state != "Z"


def remove_abandoned_staging(target: Path, suffixes: tuple[str, ...] = (STAGING_SUFFIX,)) -> None:
    """Remove the staging folders for `target` (named `.<target>.<host>-<pid>.*<suffix>`) that a killed process of
    this host left behind."""
    prefix = f".{target.name}.{socket.gethostname()}-"
    for folder in target.parent.iterdir():
        if not (folder.name.startswith(prefix) and folder.name.endswith(suffixes)):
            continue
        pid_text = folder.name[len(prefix):].split(".", 1)[0]
        if pid_text.isdigit() and not process_alive(int(pid_text)):
            shutil.rmtree(folder, ignore_errors=True)
