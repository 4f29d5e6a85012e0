"""Procedural textures for the synthetic street scenes, one family per class.

Each class has its own pattern (periodic windows, paving tiles, brick courses, lattices, leafy noise,
grass streaks, ...) on top of a jittered base colour, so that colour alone does not identify a class and a
network has to learn appearance. Every texture is a function (h, w, rng, unit) -> float32 (h, w, 3) RGB in
0..255, where `unit` is the image height / 256 so that patterns scale with the image.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Texture = Callable[[int, int, np.random.Generator, float], np.ndarray]


def smooth_noise(rng: np.random.Generator, h: int, w: int, period: float) -> np.ndarray:
    """Zero-mean, unit-ish noise varying over `period` pixels (a random grid, cubic-upsampled)."""
    grid_h = max(2, int(np.ceil(h / max(period, 1.0))) + 2)
    grid_w = max(2, int(np.ceil(w / max(period, 1.0))) + 2)
    grid = rng.standard_normal((grid_h, grid_w)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def fine_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.standard_normal((h, w)).astype(np.float32)


def jitter(rng: np.random.Generator, colour, amount: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _base(h: int, w: int, colour: np.ndarray) -> np.ndarray:
    return np.broadcast_to(colour.astype(np.float32), (h, w, 3)).copy()


def _add(image: np.ndarray, field: np.ndarray, strength) -> np.ndarray:
    image += field[..., None] * np.asarray(strength, np.float32)
    return image


def road(h, w, rng, unit):
    image = _base(h, w, jitter(rng, (92, 90, 96), 14))
    _add(image, fine_noise(rng, h, w), 7.0)
    return _add(image, smooth_noise(rng, h, w, 40 * unit), 6.0)


def sidewalk(h, w, rng, unit):
    image = _base(h, w, jitter(rng, (175, 150, 160), 16))
    period = max(3, int(round(rng.uniform(7, 11) * unit)))
    yy, xx = np.mgrid[0:h, 0:w]
    grout = ((yy % period) == 0) | ((xx + (yy // period % 2) * (period // 2)) % period == 0)
    image[grout] -= 45
    return _add(image, fine_noise(rng, h, w), 5.0)


def building(h, w, rng, unit):
    palettes = [(190, 172, 142), (122, 122, 128), (150, 84, 64), (205, 200, 192), (160, 150, 110)]
    image = _base(h, w, jitter(rng, palettes[rng.integers(len(palettes))], 12))
    _add(image, fine_noise(rng, h, w), 4.0)
    period_y = max(4, int(round(rng.uniform(9, 14) * unit)))
    period_x = max(4, int(round(rng.uniform(8, 13) * unit)))
    yy, xx = np.mgrid[0:h, 0:w]
    window = ((yy % period_y) > period_y * 0.35) & ((xx % period_x) > period_x * 0.4)
    glass = jitter(rng, (62, 72, 95), 10)
    image[window] = glass + (yy[window, None] % period_y) * 2.0
    return image


def wall(h, w, rng, unit):
    image = _base(h, w, jitter(rng, (140, 140, 162), 15))
    course = max(2, int(round(4 * unit)))
    brick = 2 * course + 1
    yy, xx = np.mgrid[0:h, 0:w]
    joints = ((yy % course) == 0) | (((xx + (yy // course % 2) * course) % brick) == 0)
    image[joints] -= 35
    return _add(image, fine_noise(rng, h, w), 4.0)


def fence(h, w, rng, unit):
    image = _base(h, w, jitter(rng, (168, 160, 150), 20))
    _add(image, smooth_noise(rng, h, w, 6 * unit), 12.0)
    period = max(3, int(round(6 * unit)))
    yy, xx = np.mgrid[0:h, 0:w]
    lattice = ((xx + yy) % period == 0) | ((xx - yy) % period == 0)
    image[lattice] = jitter(rng, (95, 72, 52), 10)
    return image


def pole(h, w, rng, unit):
    image = _base(h, w, jitter(rng, (140, 140, 136), 25))
    shade = np.cos(np.linspace(-1.2, 1.2, w, dtype=np.float32))[None, :] * 35.0 - 15.0
    image += np.broadcast_to(shade, (h, w))[..., None]
    return _add(image, fine_noise(rng, h, w), 3.0)


def traffic_light(h, w, rng, unit):
    image = _base(h, w, jitter(rng, (38, 38, 30), 8))
    lamps = [(230, 40, 30), (240, 180, 30), (40, 220, 90)]
    lit = rng.integers(3)
    radius = max(1, int(min(w, h / 3) * 0.35))
    for index, colour in enumerate(lamps):
        centre = (w // 2, int((index + 0.5) * h / 3))
        strength = 1.0 if index == lit else 0.3
        cv2.circle(image, centre, radius, tuple(float(c) * strength for c in colour), -1)
    return image


def traffic_sign(h, w, rng, unit):
    kind = rng.integers(3)
    face = [(235, 235, 230), (235, 235, 230), (30, 80, 180)][kind]
    rim = [(210, 30, 35), (210, 30, 35), (240, 240, 240)][kind]
    image = _base(h, w, jitter(rng, rim, 12))
    inset = max(1, int(min(h, w) * 0.18))
    image[inset : h - inset, inset : w - inset] = jitter(rng, face, 10)
    if h > 4 * inset and w > 4 * inset:
        image[h // 2 - inset // 2 : h // 2 + inset // 2 + 1, 2 * inset : w - 2 * inset] = (20, 20, 20)
    return image


def vegetation(h, w, rng, unit):
    image = _base(h, w, jitter(rng, (62, 118, 44), 18))
    _add(image, fine_noise(rng, h, w), (16.0, 26.0, 12.0))
    return _add(image, smooth_noise(rng, h, w, 5 * unit), (14.0, 22.0, 10.0))


def terrain(h, w, rng, unit):
    image = _base(h, w, jitter(rng, (142, 136, 86), 16))
    blades = cv2.resize(
        rng.standard_normal((max(2, h // max(1, int(6 * unit))), w)).astype(np.float32),
        (w, h),
        interpolation=cv2.INTER_LINEAR,
    )
    _add(image, blades, (10.0, 14.0, 6.0))
    return _add(image, fine_noise(rng, h, w), 6.0)


def sky(h, w, rng, unit):
    top = jitter(rng, (108, 158, 222), 12)
    bottom = jitter(rng, (192, 210, 236), 10)
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    image = np.broadcast_to(top + (bottom - top) * ramp, (h, w, 3)).astype(np.float32).copy()
    clouds = np.clip(smooth_noise(rng, h, w, 30 * unit) - 0.4, 0, 1)
    image += clouds[..., None] * (250 - image) * 0.8
    return image


def clothing(h, w, rng, unit):
    image = _base(h, w, rng.uniform(20, 235, 3).astype(np.float32))
    if rng.random() < 0.5:
        stripes = (np.arange(h)[:, None] // max(1, int(2 * unit)) % 2).astype(np.float32)
        image += np.broadcast_to(stripes, (h, w))[..., None] * 30.0
    return _add(image, fine_noise(rng, h, w), 6.0)


def vehicle_body(h, w, rng, unit):
    image = _base(h, w, rng.uniform(15, 240, 3).astype(np.float32))
    shine = np.linspace(25, -25, h, dtype=np.float32)[:, None]
    image += np.broadcast_to(shine, (h, w))[..., None]
    return _add(image, fine_noise(rng, h, w), 3.0)


def ribbed_body(h, w, rng, unit):
    image = vehicle_body(h, w, rng, unit)
    period = max(2, int(round(5 * unit)))
    image[:, (np.arange(w) % period) == 0] -= 40
    return image


def dark_glass(h, w, rng, unit):
    image = _base(h, w, jitter(rng, (45, 55, 70), 10))
    return _add(image, np.linspace(-10, 20, w, dtype=np.float32)[None, :].repeat(h, 0), 1.0)


def rubber(h, w, rng, unit):
    return _add(_base(h, w, jitter(rng, (22, 22, 24), 6)), fine_noise(rng, h, w), 4.0)


def skin(h, w, rng, unit):
    tones = [(224, 186, 160), (190, 140, 100), (120, 80, 55), (240, 205, 180)]
    return _base(h, w, jitter(rng, tones[rng.integers(len(tones))], 10))


def metal_frame(h, w, rng, unit):
    return _base(h, w, rng.uniform(30, 220, 3).astype(np.float32))


# Generator version 2 gives the classes that only context told apart at small sizes an appearance of their
# own (bench/data/synthetic.py, docs/miniature_protocol.md): riders wear high-visibility vests, bicycles have
# orange frames, motorcycles dark purple bodies.


def high_visibility_vest(h, w, rng, unit):
    return _add(_base(h, w, jitter(rng, (215, 235, 45), 15)), fine_noise(rng, h, w), 6.0)


def bicycle_frame(h, w, rng, unit):
    return _add(_base(h, w, jitter(rng, (235, 130, 35), 15)), fine_noise(rng, h, w), 4.0)


def motorcycle_body(h, w, rng, unit):
    return _add(_base(h, w, jitter(rng, (95, 30, 110), 15)), fine_noise(rng, h, w), 4.0)


def dull(colour) -> Texture:
    """A plain noisy texture, for ignored classes whose appearance needs no character."""

    def texture(h, w, rng, unit):
        image = _base(h, w, jitter(rng, colour, 20))
        return _add(image, smooth_noise(rng, h, w, 8 * unit), 10.0)

    return texture
