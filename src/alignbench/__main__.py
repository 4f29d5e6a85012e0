"""`python -m alignbench` is the same as the `alignbench` console script."""

import sys

from alignbench.bench.cli import main

sys.exit(main())
