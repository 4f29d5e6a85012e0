"""Registry entries, one module per paper / model family; importing this package registers them all.

Adding a model family: a file here calling `models.registry.register_model`, and one import line below.
"""

from models.zoo import fapn  # noqa: F401  FaPN Tables 1, 4, 8 and supplementary Table I
from models.zoo import detection  # noqa: F401  FaPN Tables 3, 5, 6 (Faster / Mask R-CNN, Panoptic FPN)
from models.zoo import sfnet  # noqa: F401  SFNet Tables 1-4
from models.zoo import fpt  # noqa: F401  FPT Table 4 (UFP semantic models)
