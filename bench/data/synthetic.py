"""Procedural street scenes written in the exact Cityscapes layout, deterministically from a seed.

A scene is painted back to front in perspective (horizon, vanishing point, depth-scaled objects): sky,
buildings, vegetation, terrain, road with lane markings, sidewalks, walls and fences, thin poles carrying
traffic signs and lights, then things sorted by depth (cars, trucks, buses, trains on rail track, persons,
riders on bicycles and motorcycles, parked bicycles). Crowd regions (a group of persons or cars with the
bare class id in instanceIds), ignore regions (ego vehicle, rectification border, static / dynamic
objects, ground, parking, rail track, guard rail, pole groups, caravans, trailers) and all 19 evaluated
classes appear in every scene, each class with its own texture (bench.data.textures).

Scene `i` of a split depends only on (seed, split, i), never on how many scenes are written.
The maps are the scene representation: labelIds, and instanceIds with label_id * 1000 + k for instances,
the bare label id for stuff and crowd regions; COCO instance / panoptic files derive from them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from alignbench.bench.data import textures as tex
from alignbench.bench.data.catalog import register_dataset
from alignbench.bench.data.cityscapes import Cityscapes
from alignbench.bench.data.coco import CocoSplit, coco_paths, export_coco
from alignbench.bench.errors import UserError
from alignbench.bench.io import write_json_atomic, write_png
from alignbench.metrics.labels import CITYSCAPES

log = logging.getLogger(__name__)

# 2: thin structures (poles, bicycle frames, sign and light faces) have a floor in pixels (MIN_STROKE_PX), and
# riders, bicycles and motorcycles an appearance of their own (bench/data/textures.py), so that small renders
# stay learnable in minutes; see docs/miniature_protocol.md.
GENERATOR_VERSION = 2
DEFAULT_SIZE = (256, 512)
# The narrowest a pole or a bicycle frame is drawn, in pixels (signs and lights: 2.5 times it; walls and
# fences: twice it in height). With widths scaled to the image alone, a 128 x 256 scene drew 1-px poles and
# 3-px signs that no model trained for minutes could find (0% IoU for pole, traffic light, traffic sign and
# bicycle in every miniature run). Near objects in large renders are wider than the floor and unchanged.
MIN_STROKE_PX = 4.0
SPLIT_CITIES = {"train": ("synthtrain",), "val": ("synthval",), "test": ("synthtest",)}

# Cityscapes label ids (cityscapesscripts.helpers.labels), by name, for readability below.
ID = {name: index for index, name in enumerate(CITYSCAPES.names)}
EVALUATED_IDS = tuple(int(i) for i in CITYSCAPES.evaluated_ids)


@dataclass
class Scene:
    """One generated frame: RGB image (None when not rendered), labelIds, instanceIds."""

    city: str
    sequence: int
    frame: int
    image: np.ndarray | None
    label_ids: np.ndarray
    instance_ids: np.ndarray

    @property
    def name(self) -> str:
        return f"{self.city}_{self.sequence:06d}_{self.frame:06d}"


class Canvas:
    """Label, instance and image buffers with painter's-algorithm drawing of local masks."""

    def __init__(self, height: int, width: int, rng: np.random.Generator, render_image: bool) -> None:
        self.height, self.width = height, width
        self.rng = rng
        self.unit = height / 256.0
        self.label = np.zeros((height, width), np.uint8)
        self.instance = np.zeros((height, width), np.uint16)
        self.image = np.zeros((height, width, 3), np.float32) if render_image else None
        self._next_instance: dict[int, int] = {}

    def new_instance_id(self, label_id: int) -> int:
        k = self._next_instance.get(label_id, 0)
        self._next_instance[label_id] = k + 1
        return label_id * 1000 + k

    def paint(self, shape: Shape, label_id: int, texture: tex.Texture, instance_id: int | None = None) -> None:
        """Paint a shape's pixels: label, instance id (default: the bare label id) and texture."""
        region = shape.clipped(self.height, self.width)
        if region is None:
            return
        (y0, y1, x0, x1), mask = region
        self.label[y0:y1, x0:x1][mask] = label_id
        self.instance[y0:y1, x0:x1][mask] = label_id if instance_id is None else instance_id
        if self.image is not None:
            pattern = texture(y1 - y0, x1 - x0, self.rng, self.unit)
            self.image[y0:y1, x0:x1][mask] = pattern[mask]


class Shape:
    """A boolean mask drawn in a local box (x0, y0, x1, y1) in image coordinates, with cv2 primitives."""

    def __init__(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.x0, self.y0 = int(np.floor(x0)), int(np.floor(y0))
        self.x1, self.y1 = max(self.x0 + 1, int(np.ceil(x1))), max(self.y0 + 1, int(np.ceil(y1)))
        self.mask = np.zeros((self.y1 - self.y0, self.x1 - self.x0), np.uint8)

    def _local(self, points) -> np.ndarray:
        return np.round(np.asarray(points, np.float64) - (self.x0, self.y0)).astype(np.int32)

    def polygon(self, points) -> Shape:
        cv2.fillPoly(self.mask, [self._local(points)], 1)
        return self

    def rect(self, x0, y0, x1, y1) -> Shape:
        return self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    def ellipse(self, cx, cy, rx, ry) -> Shape:
        centre = tuple(int(v) for v in self._local([(cx, cy)])[0])
        cv2.ellipse(self.mask, centre, (max(1, int(round(rx))), max(1, int(round(ry)))), 0, 0, 360, 1, -1)
        return self

    def ring(self, cx, cy, radius, thickness) -> Shape:
        centre = tuple(int(v) for v in self._local([(cx, cy)])[0])
        cv2.circle(self.mask, centre, max(1, int(round(radius))), 1, max(1, int(round(thickness))))
        return self

    def line(self, xa, ya, xb, yb, thickness) -> Shape:
        a, b = self._local([(xa, ya), (xb, yb)])
        cv2.line(self.mask, tuple(int(v) for v in a), tuple(int(v) for v in b), 1, max(1, int(round(thickness))))
        return self

    def clipped(self, height: int, width: int):
        y0, y1 = max(self.y0, 0), min(self.y1, height)
        x0, x1 = max(self.x0, 0), min(self.x1, width)
        if y0 >= y1 or x0 >= x1:
            return None
        mask = self.mask[y0 - self.y0 : y1 - self.y0, x0 - self.x0 : x1 - self.x0].astype(bool)
        if not mask.any():
            return None
        return (y0, y1, x0, x1), mask


TEXTURE_OF_ID: dict[int, tex.Texture] = {
    ID["road"]: tex.road,
    ID["sidewalk"]: tex.sidewalk,
    ID["building"]: tex.building,
    ID["wall"]: tex.wall,
    ID["fence"]: tex.fence,
    ID["pole"]: tex.pole,
    ID["traffic light"]: tex.traffic_light,
    ID["traffic sign"]: tex.traffic_sign,
    ID["vegetation"]: tex.vegetation,
    ID["terrain"]: tex.terrain,
    ID["sky"]: tex.sky,
    ID["unlabeled"]: tex.dull((60, 60, 60)),
    ID["ego vehicle"]: tex.dull((30, 32, 36)),
    ID["rectification border"]: tex.dull((8, 8, 8)),
    ID["out of roi"]: tex.dull((20, 20, 20)),
    ID["static"]: tex.dull((120, 110, 100)),
    ID["dynamic"]: tex.dull((111, 74, 20)),
    ID["ground"]: tex.dull((110, 95, 90)),
    ID["parking"]: tex.dull((150, 130, 128)),
    ID["rail track"]: tex.dull((100, 85, 75)),
    ID["guard rail"]: tex.dull((170, 165, 170)),
    ID["polegroup"]: tex.pole,
}


class StreetScene:
    """Draws one street scene onto a Canvas; `density` scales how many things appear."""

    def __init__(self, canvas: Canvas, density: float) -> None:
        self.c = canvas
        self.rng = canvas.rng
        self.density = density
        h, w = canvas.height, canvas.width
        self.horizon = h * self.rng.uniform(0.36, 0.46)
        self.vanish_x = w * self.rng.uniform(0.4, 0.6)
        self.road_far = w * self.rng.uniform(0.02, 0.05)  # half-width of the road at the horizon
        self.walk_ratio = self.rng.uniform(0.25, 0.4)  # sidewalk width relative to the road half-width

    # geometry ------------------------------------------------------------------------------------------

    def depth(self, y: float) -> float:
        """Perspective scale in (0, 1]: 1 at the bottom row, near 0 at the horizon."""
        return float(np.clip((y - self.horizon) / (self.c.height - self.horizon), 0.04, 1.0))

    def road_edges(self, y: float) -> tuple[float, float]:
        s = (y - self.horizon) / (self.c.height - self.horizon)
        half = self.road_far + (0.75 * self.c.width - self.road_far) * s
        return self.vanish_x - half, self.vanish_x + half

    def paint(self, shape: Shape, name: str, texture: tex.Texture | None = None, instance: bool = False) -> None:
        label_id = ID[name]
        instance_id = self.c.new_instance_id(label_id) if instance else None
        self.c.paint(shape, label_id, texture or TEXTURE_OF_ID[label_id], instance_id)

    def draw(self) -> None:
        self.background()
        self.street_furniture()
        self.things()
        self.ignore_regions()

    # stuff ---------------------------------------------------------------------------------------------

    def background(self) -> None:
        rng, h, w = self.rng, self.c.height, self.c.width
        self.paint(Shape(0, 0, w, h).rect(0, 0, w, h), "sky")
        x = -rng.uniform(0, 0.05) * w
        while x < w:
            width = w * rng.uniform(0.06, 0.2)
            if rng.random() < 0.85:
                top = self.horizon - h * rng.uniform(0.08, 0.36)
                self.paint(Shape(x, top, x + width, self.horizon + 1).rect(x, top, x + width, self.horizon + h * 0.04), "building")
            x += width + (w * rng.uniform(0.01, 0.04) if rng.random() < 0.3 else 0)
        for _ in range(rng.integers(2, 6)):  # tree crowns in front of the buildings
            cx, cy = w * rng.uniform(0, 1), self.horizon - h * rng.uniform(0.0, 0.12)
            radius = h * rng.uniform(0.04, 0.1)
            crown = Shape(cx - 2 * radius, cy - 2 * radius, cx + 2 * radius, self.horizon + h * 0.05)
            for _ in range(5):
                crown.ellipse(cx + rng.uniform(-1, 1) * radius, cy + rng.uniform(-1, 1) * radius * 0.6,
                              radius * rng.uniform(0.6, 1.0), radius * rng.uniform(0.5, 0.9))
            crown.rect(cx - radius * 0.1, cy, cx + radius * 0.1, self.horizon + h * 0.05)
            self.paint(crown, "vegetation")
        ground = self.horizon + 1
        self.paint(Shape(0, ground - 2, w, h).rect(0, ground - 2, w, h), "terrain")
        for side in (-1, 1):  # sidewalks wider than the road edges, then the road on top
            walk = []
            for y in (self.horizon + 1, h + 1):
                left, right = self.road_edges(y)
                half = (right - left) / 2
                edge = right if side > 0 else left
                walk.append((edge + side * half * self.walk_ratio, y))
            a, b = walk
            edge_top = self.road_edges(self.horizon + 1)[side > 0]
            edge_bottom = self.road_edges(h + 1)[side > 0]
            polygon = [(edge_top, self.horizon + 1), a, b, (edge_bottom, h + 1)]
            xs = [p[0] for p in polygon]
            self.paint(Shape(min(xs), self.horizon, max(xs), h + 1).polygon(polygon), "sidewalk")
        top_left, top_right = self.road_edges(self.horizon + 1)
        bottom_left, bottom_right = self.road_edges(h + 1)
        road = [(top_left, self.horizon + 1), (top_right, self.horizon + 1), (bottom_right, h + 1), (bottom_left, h + 1)]
        self.paint(Shape(bottom_left, self.horizon, bottom_right, h + 1).polygon(road), "road")
        # lane markings are road pixels with a white paint texture
        y = self.horizon + (h - self.horizon) * 0.08
        while y < h:
            length = (h - self.horizon) * 0.06 * (0.3 + self.depth(y))
            width = max(1.0, 6 * self.c.unit * self.depth(y))
            x = self.vanish_x
            dash = Shape(x - width, y, x + width, y + length).rect(x - width / 2, y, x + width / 2, y + length)
            self.paint(dash, "road", tex.dull((235, 235, 228)))
            y += length * 2.2

    def street_furniture(self) -> None:
        rng, h = self.rng, self.c.height
        for _ in range(rng.integers(2, 5)):
            y_base = self.horizon + (h - self.horizon) * rng.uniform(0.05, 0.35)
            self.barrier(y_base, "wall" if rng.random() < 0.5 else "fence")
        for _ in range(rng.integers(3, 8)):
            y_base = self.horizon + (h - self.horizon) * rng.uniform(0.08, 0.9)
            self.pole(y_base, "traffic sign" if rng.random() < 0.6 else "traffic light")
        self.ignored_furniture()

    def barrier(self, y_base: float, name: str) -> None:
        """A wall or fence segment along the back of a sidewalk."""
        rng, h, w = self.rng, self.c.height, self.c.width
        left, right = self.road_edges(y_base)
        side = rng.choice([-1, 1])
        x0 = (left - (right - left) * 0.2) if side < 0 else (right + (right - left) * 0.05)
        length = w * rng.uniform(0.08, 0.25)
        height = h * 0.12 * self.depth(y_base) + 2 * MIN_STROKE_PX
        xa, xb = (x0 - length, x0) if side < 0 else (x0, x0 + length)
        self.paint(Shape(xa, y_base - height, xb, y_base).rect(xa, y_base - height, xb, y_base), name)

    def pole(self, y_base: float, attachment: str | None) -> None:
        """A thin pole beside the road carrying a traffic sign or a traffic light."""
        rng, h = self.rng, self.c.height
        s = self.depth(y_base)
        left, right = self.road_edges(y_base)
        offset = (right - left) * rng.uniform(0.03, 0.15)
        x = left - offset if rng.random() < 0.5 else right + offset
        x = float(np.clip(x, 0.03 * self.c.width, 0.97 * self.c.width))
        height = h * 0.6 * s + 4
        thickness = max(MIN_STROKE_PX, 0.012 * h * s)
        top = y_base - height
        self.paint(Shape(x - thickness, top, x + thickness, y_base).rect(x - thickness / 2, top, x + thickness / 2, y_base), "pole")
        size = max(2.5 * MIN_STROKE_PX, 0.06 * h * s)
        if attachment == "traffic sign":
            sy = top + size * rng.uniform(0, 1.5)
            sign = Shape(x - size, sy - size, x + size, sy + size)
            if rng.random() < 0.5:
                sign.ellipse(x, sy, size / 2, size / 2)
            else:
                sign.polygon([(x - size / 2, sy - size / 2), (x + size / 2, sy - size / 2), (x, sy + size / 2)])
            self.paint(sign, "traffic sign")
        elif attachment == "traffic light":
            lw, lh = size * 0.5, size * 1.3
            ly = top + size * 0.2
            self.paint(Shape(x - lw, ly, x + lw, ly + lh).rect(x - lw / 2, ly, x + lw / 2, ly + lh), "traffic light")

    def ignored_furniture(self) -> None:
        """A guard rail and a pole group (both ignored in evaluation)."""
        rng, h, w = self.rng, self.c.height, self.c.width
        y_base = self.horizon + (h - self.horizon) * rng.uniform(0.2, 0.5)
        left, right = self.road_edges(y_base)
        rail_height = max(2.0, 0.03 * h * self.depth(y_base))
        xa = right + w * 0.01
        self.paint(Shape(xa, y_base - rail_height, xa + w * 0.15, y_base).rect(xa, y_base - rail_height, xa + w * 0.15, y_base), "guard rail")
        y_base = self.horizon + (h - self.horizon) * rng.uniform(0.1, 0.4)
        s = self.depth(y_base)
        x = self.road_edges(y_base)[0] - w * 0.03
        group = Shape(x - 0.05 * h, y_base - 0.5 * h * s - 2, x + 0.05 * h, y_base)
        for dx in (-0.02, 0.0, 0.02):
            group.rect(x + dx * h, y_base - 0.5 * h * s, x + dx * h + max(1.0, 0.008 * h * s), y_base)
        self.paint(group, "polegroup")

    # things ---------------------------------------------------------------------------------------------

    def things(self) -> None:
        rng, h = self.rng, self.c.height
        plans: list[tuple[float, Callable[[float], None]]] = []

        def count(low: int, high: int) -> int:
            return int(rng.integers(low, max(low, int(round(high * self.density))) + 1))

        def on_road(y_low=0.05, y_high=0.95) -> float:
            return self.horizon + (h - self.horizon) * rng.uniform(y_low, y_high)

        for _ in range(count(1, 8)):
            plans.append((on_road(), self.car))
        for _ in range(count(1, 2)):
            plans.append((on_road(0.1, 0.6), self.truck))
        for _ in range(count(1, 1)):
            plans.append((on_road(0.1, 0.5), self.bus))
        plans.append((on_road(0.03, 0.2), self.train))
        for _ in range(count(2, 14)):
            plans.append((on_road(0.05, 0.95), self.person))
        for _ in range(count(1, 3)):
            plans.append((on_road(0.1, 0.9), self.rider_on_bicycle))
        for _ in range(count(1, 2)):
            plans.append((on_road(0.1, 0.9), self.rider_on_motorcycle))
        for _ in range(count(1, 3)):
            plans.append((on_road(0.05, 0.9), self.parked_bicycle))
        plans.append((on_road(0.1, 0.7), self.person_crowd))
        if rng.random() < 0.5:
            plans.append((on_road(0.05, 0.3), self.car_crowd))
        if rng.random() < 0.5:
            plans.append((on_road(0.1, 0.6), lambda y: self.box_vehicle(y, "caravan", 0.5, 0.3)))
        if rng.random() < 0.5:
            plans.append((on_road(0.1, 0.6), lambda y: self.box_vehicle(y, "trailer", 0.45, 0.22)))
        for y, draw in sorted(plans, key=lambda plan: plan[0]):  # far to near: nearer things occlude
            draw(y)

    def _x_on_road(self, y: float, spread: float = 1.0) -> float:
        left, right = self.road_edges(y)
        middle, half = (left + right) / 2, (right - left) / 2
        return middle + half * self.rng.uniform(-1.0, 1.0) * spread

    def _x_on_sidewalk(self, y: float) -> float:
        left, right = self.road_edges(y)
        half = (right - left) / 2
        offset = half * self.walk_ratio * self.rng.uniform(0.1, 0.9)
        return left - offset if self.rng.random() < 0.5 else right + offset

    def _wheels(self, shape: Shape, xs, y_base, radius) -> None:
        for x in xs:
            shape.ellipse(x, y_base - radius, radius, radius)

    def car(self, y: float) -> None:
        s, x = self.depth(y) * self.c.height, self._x_on_road(y, 0.8)
        width, height = 0.42 * s, 0.19 * s
        body = Shape(x - width / 2, y - height, x + width / 2, y + 1)
        body.rect(x - width / 2, y - height * 0.62, x + width / 2, y - height * 0.12)
        body.polygon([(x - width * 0.32, y - height * 0.6), (x - width * 0.2, y - height),
                      (x + width * 0.2, y - height), (x + width * 0.35, y - height * 0.6)])
        self._wheels(body, (x - width * 0.3, x + width * 0.3), y, height * 0.18)
        self._vehicle(body, "car", self._windowed(tex.vehicle_body, rows=(0.08, 0.36), pillars=False))

    def truck(self, y: float) -> None:
        s, x = self.depth(y) * self.c.height, self._x_on_road(y, 0.7)
        width, height = 0.6 * s, 0.38 * s
        body = Shape(x - width / 2, y - height, x + width / 2, y + 1)
        body.rect(x - width / 2, y - height, x + width * 0.2, y - height * 0.12)
        body.rect(x + width * 0.2, y - height * 0.6, x + width / 2, y - height * 0.12)
        self._wheels(body, (x - width * 0.35, x - width * 0.15, x + width * 0.35), y, height * 0.12)
        self._vehicle(body, "truck", tex.ribbed_body)

    def bus(self, y: float) -> None:
        s, x = self.depth(y) * self.c.height, self._x_on_road(y, 0.6)
        width, height = 0.95 * s, 0.42 * s
        body = Shape(x - width / 2, y - height, x + width / 2, y + 1)
        body.rect(x - width / 2, y - height, x + width / 2, y - height * 0.1)
        self._wheels(body, (x - width * 0.35, x + width * 0.35), y, height * 0.1)
        self._vehicle(body, "bus", self._windowed(tex.vehicle_body, rows=(0.15, 0.45)))

    def train(self, y: float) -> None:
        s, h, w = self.depth(y) * self.c.height, self.c.height, self.c.width
        width, height = 1.4 * s + 0.12 * w, 0.34 * s + 0.03 * h
        x = w * self.rng.uniform(0.2, 0.8)
        track = Shape(x - width / 2 - 4, y - 2, x + width / 2 + 4, y + max(2.0, 0.02 * h))
        track.rect(x - width / 2 - 4, y - 2, x + width / 2 + 4, y + max(2.0, 0.02 * h))
        self.paint(track, "rail track")
        body = Shape(x - width / 2, y - height, x + width / 2, y)
        body.rect(x - width / 2, y - height, x + width / 2, y - 1)
        self._vehicle(body, "train", self._windowed(tex.ribbed_body, rows=(0.2, 0.5)))

    def box_vehicle(self, y: float, name: str, width_ratio: float, height_ratio: float) -> None:
        s, x = self.depth(y) * self.c.height, self._x_on_road(y, 0.9)
        width, height = width_ratio * s, height_ratio * s
        body = Shape(x - width / 2, y - height, x + width / 2, y + 1).rect(x - width / 2, y - height, x + width / 2, y - height * 0.1)
        self._wheels(body, (x - width * 0.25, x + width * 0.25), y, height * 0.12)
        self.paint(body, name, tex.vehicle_body, instance=True)

    def _windowed(self, body_texture: tex.Texture, rows: tuple[float, float], pillars: bool = True) -> tex.Texture:
        """A body texture with a band of windows (separated by pillars) between two relative rows."""

        def texture(h, w, rng, unit):
            image = body_texture(h, w, rng, unit)
            top, bottom = int(h * rows[0]), max(int(h * rows[0]) + 1, int(h * rows[1]))
            period = max(3, int(8 * unit))
            glass = tex.dark_glass(bottom - top, w, rng, unit)
            columns = (np.arange(w) % period) > period * 0.25 if pillars else np.ones(w, bool)
            image[top:bottom][:, columns] = glass[:, columns]
            return image

        return texture

    def _vehicle(self, body: Shape, name: str, texture: tex.Texture) -> None:
        def with_glass_and_wheels(h, w, rng, unit):
            image = texture(h, w, rng, unit)
            image[int(h * 0.9) :] = tex.rubber(h - int(h * 0.9), w, rng, unit)
            return image

        self.paint(body, name, with_glass_and_wheels, instance=True)

    def _person_shape(self, x: float, y: float, height: float, riding: bool = False) -> Shape:
        width = height * 0.32
        shape = Shape(x - width, y - height, x + width, y + 1)
        head = height * 0.1
        shape.ellipse(x, y - height + head, head * 0.8, head)
        shape.rect(x - width * 0.4, y - height + 2 * head, x + width * 0.4, y - height * 0.45)
        if riding:
            shape.line(x - width * 0.2, y - height * 0.45, x + width * 0.35, y - height * 0.15, max(1.0, width * 0.25))
        else:
            shape.line(x - width * 0.15, y - height * 0.45, x - width * 0.3, y, max(1.0, width * 0.22))
            shape.line(x + width * 0.15, y - height * 0.45, x + width * 0.3, y, max(1.0, width * 0.22))
        return shape

    def _person_texture(self, helmet: bool) -> tex.Texture:
        """Clothes and skin; a rider (`helmet`) wears a helmet and a high-visibility vest."""

        def texture(h, w, rng, unit):
            image = (tex.high_visibility_vest if helmet else tex.clothing)(h, w, rng, unit)
            image[int(h * 0.55) :] = tex._base(h - int(h * 0.55), w, tex.jitter(rng, (40, 50, 90), 25))
            head_rows = max(1, int(h * 0.2))
            image[:head_rows] = (tex.metal_frame if helmet else tex.skin)(head_rows, w, rng, unit)
            return image

        return texture

    def person(self, y: float) -> None:
        x = self._x_on_sidewalk(y) if self.rng.random() < 0.7 else self._x_on_road(y)
        height = 0.33 * self.depth(y) * self.c.height + 3
        self.paint(self._person_shape(x, y, height), "person", self._person_texture(False), instance=True)

    def _two_wheeler(self, x: float, y: float, length: float, name: str, thickness: float) -> None:
        radius = length * 0.22
        shape = Shape(x - length / 2 - 1, y - length * 0.75, x + length / 2 + 1, y + 1)
        front, back = x + length / 2 - radius, x - length / 2 + radius
        shape.ring(back, y - radius, radius, thickness).ring(front, y - radius, radius, thickness)
        shape.line(back, y - radius, x, y - 2.2 * radius, thickness)
        shape.line(x, y - 2.2 * radius, front, y - radius, thickness)
        shape.line(x, y - 2.2 * radius, front - radius * 0.3, y - 2.8 * radius, thickness)
        if name == "motorcycle":
            shape.ellipse(x, y - 1.9 * radius, length * 0.28, radius * 0.55)
        self.paint(shape, name, tex.bicycle_frame if name == "bicycle" else tex.motorcycle_body, instance=True)

    def rider_on_bicycle(self, y: float) -> None:
        self._rider(y, "bicycle", 0.2)

    def rider_on_motorcycle(self, y: float) -> None:
        self._rider(y, "motorcycle", 0.24)

    def _rider(self, y: float, vehicle: str, length_ratio: float) -> None:
        s = self.depth(y) * self.c.height
        x = self._x_on_road(y, 0.9)
        length = length_ratio * s + 4
        thickness = max(MIN_STROKE_PX, 0.012 * s) if vehicle == "bicycle" else max(MIN_STROKE_PX, 0.03 * s)
        height = 0.3 * s + 3
        self.paint(self._person_shape(x, y - length * 0.35, height * 0.9, riding=True), "rider", self._person_texture(True), instance=True)
        self._two_wheeler(x, y, length, vehicle, thickness)

    def parked_bicycle(self, y: float) -> None:
        s = self.depth(y) * self.c.height
        self._two_wheeler(self._x_on_sidewalk(y), y, 0.2 * s + 4, "bicycle", max(MIN_STROKE_PX, 0.012 * s))

    def person_crowd(self, y: float) -> None:
        """A tight group of persons labelled as one crowd region (instanceIds = bare class id)."""
        s = self.depth(y) * self.c.height
        x = float(np.clip(self._x_on_sidewalk(y), 0.1 * self.c.width, 0.9 * self.c.width))
        height = 0.33 * s + 3
        group = Shape(x - height * 1.2, y - height * 1.1, x + height * 1.2, y + 1)
        for dx in np.linspace(-0.8, 0.8, 6):
            group.rect(x + dx * height - height * 0.15, y - height * self.rng.uniform(0.85, 1.0), x + dx * height + height * 0.15, y)
            group.ellipse(x + dx * height, y - height * 0.95, height * 0.09, height * 0.1)
        self.paint(group, "person", self._person_texture(False))

    def car_crowd(self, y: float) -> None:
        """Distant cars packed together, labelled as one crowd region (instanceIds = 26)."""
        s = self.depth(y) * self.c.height
        x = self._x_on_road(y, 0.4)
        width, height = 0.42 * s, 0.19 * s
        group = Shape(x - width * 1.5, y - height, x + width * 1.5, y + 1)
        for dx in (-1.0, -0.4, 0.3, 1.0):
            group.rect(x + dx * width - width / 2, y - height * self.rng.uniform(0.7, 1.0), x + dx * width + width / 2, y)
        self.paint(group, "car", tex.vehicle_body)

    # ignored regions -----------------------------------------------------------------------------------

    def ignore_regions(self) -> None:
        rng, h, w = self.rng, self.c.height, self.c.width
        for name in ("static", "dynamic", "ground", "parking"):
            y = self.horizon + (h - self.horizon) * rng.uniform(0.2, 0.8)
            s = self.depth(y) * h
            x = float(np.clip(self._x_on_sidewalk(y), 0.05 * w, 0.95 * w))
            size = 0.08 * s + 3
            shape = Shape(x - size, y - size, x + size, y + 1)
            if name in ("ground", "parking"):
                shape.polygon([(x - size, y), (x + size, y), (x + size * 0.6, y - size * 0.4), (x - size * 0.6, y - size * 0.4)])
            else:
                shape.rect(x - size / 2, y - size, x + size / 2, y)
            self.paint(shape, name)
        # unlabeled scraps
        for _ in range(rng.integers(1, 4)):
            x, y, size = w * rng.uniform(0, 1), h * rng.uniform(0, 1), h * rng.uniform(0.01, 0.03) + 1
            self.paint(Shape(x - size, y - size, x + size, y + size).ellipse(x, y, size, size * 0.7), "unlabeled")
        # ego vehicle hood along the bottom, rectification border at the edges, out-of-roi corner
        hood = h * rng.uniform(0.05, 0.1)
        self.paint(Shape(0, h - hood, w, h).ellipse(w / 2, h, w * 0.7, hood), "ego vehicle")
        border = max(1, int(round(w * rng.uniform(0.004, 0.012))))
        self.paint(Shape(0, 0, border, h).rect(0, 0, border, h), "rectification border")
        self.paint(Shape(w - border, 0, w, h).rect(w - border, 0, w, h), "rectification border")
        corner = max(2, int(h * 0.04))
        self.paint(Shape(0, h - corner, corner * 2, h).rect(0, h - corner, corner * 2, h), "out of roi")


def generate_scene(
    seed: int,
    split: str,
    index: int,
    size: tuple[int, int] = DEFAULT_SIZE,
    density: float = 1.0,
    render_image: bool = True,
) -> Scene:
    """Generate scene `index` of `split`; the same arguments always give the same scene."""
    height, width = size
    if height < 32 or width < 32:
        raise ValueError(f"scene size must be at least 32x32, got {height}x{width}")
    split_code = {"train": 0, "val": 1, "test": 2}[split]
    rng = np.random.default_rng([seed, split_code, index, GENERATOR_VERSION])
    canvas = Canvas(height, width, rng, render_image)
    scene = StreetScene(canvas, density)
    scene.draw()
    _ensure_every_class(scene)
    image = None
    if canvas.image is not None:
        image = _finish_image(canvas.image, rng)
    cities = SPLIT_CITIES[split]
    return Scene(
        city=cities[index % len(cities)],
        sequence=index // 1000,
        frame=index % 1000 * 19 + 19,  # Cityscapes-like frame numbers (the annotated 20th frame)
        image=image,
        label_ids=canvas.label,
        instance_ids=canvas.instance,
    )


def _ensure_every_class(scene: StreetScene) -> None:
    """Occlusion can hide a small class or the crowd entirely; paint a visible one last so all appear."""
    thing_ids = [i for i in EVALUATED_IDS if CITYSCAPES.has_instances[i]]
    h = scene.c.height
    for _ in range(20):
        if np.isin(scene.c.instance, thing_ids).any():  # a crowd region: thing label, bare instance id
            break
        scene.person_crowd(scene.horizon + (h - scene.horizon) * scene.rng.uniform(0.3, 0.8))
    else:
        raise RuntimeError("synthetic scene could not show a crowd region")
    drawers = {
        "car": scene.car, "truck": scene.truck, "bus": scene.bus, "train": scene.train,
        "person": scene.person, "rider": scene.rider_on_bicycle, "bicycle": scene.parked_bicycle,
        "motorcycle": scene.rider_on_motorcycle,
        "wall": lambda y: scene.barrier(y, "wall"), "fence": lambda y: scene.barrier(y, "fence"),
        "pole": lambda y: scene.pole(y, None),
        "traffic sign": lambda y: scene.pole(y, "traffic sign"),
        "traffic light": lambda y: scene.pole(y, "traffic light"),
    }
    for label_id in EVALUATED_IDS:
        name = CITYSCAPES.names[label_id]
        for _ in range(20):
            if (scene.c.label == label_id).any():
                break
            y = scene.horizon + (h - scene.horizon) * scene.rng.uniform(0.3, 0.85)
            if name in drawers:
                drawers[name](y)
            else:  # a large stuff class lost under things: a patch of it near the bottom
                size = h * 0.05
                x = scene.c.width * scene.rng.uniform(0.1, 0.9)
                scene.paint(Shape(x - size, y - size, x + size, y + size).rect(x - size, y - size, x + size, y + size), name)
        else:
            raise RuntimeError(f"synthetic scene could not show class {name!r}")


def _finish_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Global lighting, a slight lens blur and sensor noise, then 8-bit RGB."""
    h, w = image.shape[:2]
    light = 1.0 + 0.12 * tex.smooth_noise(rng, h, w, max(h, w) / 2)
    image = image * light[..., None]
    image = cv2.GaussianBlur(image, (3, 3), 0.7)
    image += rng.normal(0, 2.5, image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# --- writing the Cityscapes tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthSpec:
    """What `alignbench data synth` generates; stored as synth.json beside the tree."""

    n_train: int = 24
    n_val: int = 8
    size: tuple[int, int] = DEFAULT_SIZE
    seed: int = 0
    density: float = 1.0

    def to_json(self) -> dict:
        return {
            "generator_version": GENERATOR_VERSION,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "size": list(self.size),
            "seed": self.seed,
            "density": self.density,
        }


def scene_paths(root: Path, split: str, scene: Scene) -> dict[str, Path]:
    """Where each file of a scene goes in the Cityscapes layout."""
    image_dir = root / "leftImg8bit" / split / scene.city
    gt_dir = root / "gtFine" / split / scene.city
    return {
        "image": image_dir / f"{scene.name}_leftImg8bit.png",
        "labelIds": gt_dir / f"{scene.name}_gtFine_labelIds.png",
        "instanceIds": gt_dir / f"{scene.name}_gtFine_instanceIds.png",
        "color": gt_dir / f"{scene.name}_gtFine_color.png",
    }


def colorize(label_ids: np.ndarray) -> np.ndarray:
    """RGBA colour image of a labelIds map with the Cityscapes palette (as gtFine_color.png)."""
    rgb = CITYSCAPES.colors[label_ids]
    alpha = np.full(label_ids.shape + (1,), 255, np.uint8)
    return np.concatenate([rgb, alpha], axis=2)


def write_scene(root: Path, split: str, scene: Scene) -> dict[str, Path]:
    paths = scene_paths(root, split, scene)
    arrays = {"image": scene.image, "labelIds": scene.label_ids, "instanceIds": scene.instance_ids}
    for key, array in arrays.items():
        if array is not None:
            _write_png_naming_file(paths[key], array)
    _write_png_naming_file(paths["color"], colorize(scene.label_ids))
    return paths


def _write_png_naming_file(path: Path, array: np.ndarray) -> None:
    """write_png; an OSError (a full disk fails in write(), which names no file) gets `path` as its file name."""
    try:
        write_png(path, array)
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(path)) from None


def write_dataset(root: str | Path, spec: SynthSpec, progress: bool = True) -> Path:
    """Write train and val scenes under `root` in the Cityscapes layout, plus synth.json.

    synth.json is written last, so only a complete tree has one. Writing errors (a full disk) become one
    `UserError` line naming the file; the callers in bench/data/cache.py write into a staging folder and
    remove it on failure, so no partial tree is left behind.
    """
    from tqdm import tqdm  # here: only writing scenes shows a bar (`alignbench datasets` and the catalog import this module)

    root = Path(root)
    jobs = [("train", i) for i in range(spec.n_train)] + [("val", i) for i in range(spec.n_val)]
    try:
        for split, index in tqdm(jobs, desc="synthetic scenes", unit="scene", disable=not progress):
            scene = generate_scene(spec.seed, split, index, spec.size, spec.density)
            write_scene(root, split, scene)
    except OSError as error:  # a full disk, a read-only folder: one line naming the file
        raise UserError(f"{error.filename or root}: cannot write ({error.strerror or error})") from None
    write_json_atomic(root / "synth.json", spec.to_json())  # last: a tree without it is incomplete
    log.info("wrote %d train and %d val scenes to %s", spec.n_train, spec.n_val, root)
    return root


def read_synth_spec(root: Path) -> dict | None:
    """The synth.json of a generated tree, or None when absent or unreadable."""
    try:
        return json.loads((Path(root) / "synth.json").read_text())
    except (OSError, ValueError):
        return None


# --- presets: the named datasets of `--data NAME` and `alignbench data synth --preset NAME` ------------------

#: "synthetic": the default scenes (256 x 512, 24 train / 8 val); "synthetic-miniature": the miniature
#: protocol's (docs/miniature_protocol.md): 128 x 256, 128 train / 64 held-out val scenes, seed 0.
SYNTHETIC_PRESETS: dict[str, SynthSpec] = {
    "synthetic": SynthSpec(),
    "synthetic-miniature": SynthSpec(n_train=128, n_val=64, size=(128, 256)),
}


# --- the dataset ------------------------------------------------------------------------------------------


class Synthetic(Cityscapes):
    """The generated scenes as a dataset: Cityscapes' layout and label table, every task (semantic from the tree,
    detection / instance / panoptic from its COCO export, written once beside it)."""

    name = "synthetic"
    title = "alignbench's procedural street scenes (Cityscapes layout and label table; `--data synthetic[-miniature]`)"
    tasks = ("semantic", "detection", "instance", "panoptic")
    splits = ("train", "val")
    citation = "alignbench (bench/data/synthetic.py, generator version 2)"
    # The scenes imitate Cityscapes frames at a fraction of their size, so the boundary bands are stated at
    # Cityscapes' 1024 x 2048 and scaled to the scenes' size (metrics.boundary.scaled_widths).
    native_size = (1024, 2048)

    def coco_files(self, root: Path, split: str):
        """The COCO files of a split, exported from the tree on first use (bench.data.coco.export_coco)."""
        out = Path(root) / "coco"
        paths = coco_paths(out, split)
        if not paths["panoptic_json"].exists():
            export_coco(root, out, split)
        return CocoSplit(paths["instances_json"], paths["panoptic_json"], paths["panoptic_dir"], Path(root) / "leftImg8bit" / split)


register_dataset(Synthetic())
