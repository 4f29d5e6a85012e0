"""alignbench: evaluation and analysis suite for feature-pyramid necks (FPN, FaPN, SFNet, FPT).

One import namespace over the repository's folders (setuptools `package-dir` in pyproject.toml):

    alignbench.models    the model zoo (registry, backbones, necks, heads, ops); never imports the harness
    alignbench.metrics   pure metric code (semantic, boundary bands, COCO AP, panoptic quality)
    alignbench.reports   paper-style tables, figures and the papers' reference numbers
    alignbench.bench     the harness: command line, data, training, evaluation, profiling, results store

Importing `alignbench` itself is light: the subpackages load when used.
"""

__version__ = "0.2.0"
