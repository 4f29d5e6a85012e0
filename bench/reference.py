"""Access to the reference implementations that benchmarks and tests compare against.

cityscapesscripts 2.3.0's evaluation modules call `np.in1d`, which NumPy 2.4 removed. They are imported
only here, only by benchmarks and tests, never by the evaluation commands; on a NumPy without `in1d` a
shim with the same meaning (`np.isin` on the flattened array) is installed first.
"""

from __future__ import annotations

import numpy as np


def _install_in1d_shim() -> None:
    if not hasattr(np, "in1d"):

        def in1d(values, test_values, assume_unique=False, invert=False):
            return np.isin(np.ravel(values), test_values, assume_unique=assume_unique, invert=invert)

        np.in1d = in1d


def cityscapes_semantic_reference():
    """cityscapesscripts' evalPixelLevelSemanticLabeling, quiet and writing no JSON file."""
    _install_in1d_shim()
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as reference

    reference.args.quiet = True
    reference.args.JSONOutput = False
    reference.args.evalInstLevelScore = True
    reference.args.evalPixelAccuracy = False
    return reference
