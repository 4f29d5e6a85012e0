"""Registry entries, one module per paper / model family; importing this package registers them all.

Adding a model family: a file here calling `models.registry.register_model`, and one import line below.
"""

from alignbench.models.zoo import (
    detection,  # noqa: F401  FaPN Tables 3, 5, 6 (Faster / Mask R-CNN, Panoptic FPN)
    fapn,  # noqa: F401  FaPN Tables 1, 4, 8 and supplementary Table I
    fpt,  # noqa: F401  FPT Table 4 (UFP semantic models)
    sfnet,  # noqa: F401  SFNet Tables 1-4
)
