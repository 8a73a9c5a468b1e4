"""`python -m mia_nb run --params params/default.yaml`."""

import sys

from mia_nb.runner.cli import main

sys.exit(main())
