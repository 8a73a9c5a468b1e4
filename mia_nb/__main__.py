"""`python -m mia_nb run --params params/default.yaml`."""

import sys

from .run import main

sys.exit(main())
