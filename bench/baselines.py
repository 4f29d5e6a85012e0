"""Oracle baselines that need no model: the ground truth seen at a coarser resolution.

`coarse_prediction` mimics a decoder that predicts perfectly at 1/stride resolution and upsamples without
alignment: every error it makes lies near a boundary, which is what boundary-band mIoU measures. Used by
the interim `run-all` and by the speed benchmark as a realistic prediction.
"""

from __future__ import annotations

import cv2
import numpy as np

from alignbench.metrics.labels import CITYSCAPES, IGNORE_TRAIN_ID


def coarse_prediction(label_ids: np.ndarray, stride: int) -> np.ndarray:
    """Label-id prediction: train ids sampled at pixel centres every `stride` px, nearest-upsampled.

    Ignored cells take the most frequent evaluated class of the image, as a model that only predicts the
    19 classes would. Returns uint8 label ids of the input's size.
    """
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    height, width = label_ids.shape
    train_ids = CITYSCAPES.train_id_of[label_ids]
    coarse = train_ids[stride // 2 :: stride, stride // 2 :: stride].copy()
    counts = np.bincount(train_ids[train_ids != IGNORE_TRAIN_ID].ravel(), minlength=CITYSCAPES.num_train_ids)
    coarse[coarse == IGNORE_TRAIN_ID] = int(np.argmax(counts)) if counts.any() else 0
    upsampled = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_NEAREST)
    return CITYSCAPES.label_id_of_train_id[upsampled]
