"""Images into model inputs: the harness's one image -> tensor conversion."""

from __future__ import annotations

import numpy as np


def image_to_tensor(image: np.ndarray):
    """HxWx3 uint8 RGB -> 3xHxW float32 tensor in [0, 1], the models' input convention (a model that wants
    another range or channel order, e.g. detectron2's BGR 0..255, converts inside its forward)."""
    import torch  # here, so that the data readers stay importable without torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
