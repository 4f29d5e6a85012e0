"""Registry entries, one module per paper / model family; importing this package registers them all.

Adding a model family: a file here calling `models.registry.register_model`, and one import line below.
"""

from models.zoo import fapn  # noqa: F401  FaPN Tables 1, 4, 8 and supplementary Table I
