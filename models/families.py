"""The model families whose registry entries `alignbench.models` loads, in registration order.

Each family is one package holding its modules, its model assembly and its registry entries (`zoo.py`):
- detection: Faster R-CNN, Mask R-CNN and Panoptic FPN on any neck (FaPN Tables 3, 5, 6; FPT Tables 1-3);
- fapn: FaPN's semantic tables (FaPN and its FPN baselines with PointRend / Semantic-FPN heads, real-time FaPN);
- fpt: FPT's semantic Table 4 (UFP and its transformers);
- sfnet: SFNet Tables 1-4;
- scaffolds: the built-in necks registered with `register_neck` and composed into every task scaffold with
  every backbone (last, so that composed names that are paper rows find those rows registered).
Shared pieces have modules of their own: backbones/, heads/ (common heads and losses), ops/, layers.py,
fpn.py (the plain FPN neck), segmentation.py (the segmentation model base class and the
backbone + neck + head assembly) and capture.py. The registry (registry.py) imports no family; this module
is the only place that lists them, and `alignbench.models` imports it once.

Adding a family: a package with a `zoo.py` calling `alignbench.models.registry.register_model`, and one
entry in `FAMILIES`.
"""

from __future__ import annotations

import importlib

FAMILIES = ("detection", "fapn", "fpt", "sfnet", "scaffolds")


def load_families() -> None:
    """Import every family's registry module (registering its models); later calls do nothing."""
    for family in FAMILIES:
        importlib.import_module(f"alignbench.models.{family}.zoo")
