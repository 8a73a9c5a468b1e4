"""mia-nb: a reproducible study of score-based membership inference attacks.

Every piece of logic of the notebooks lives in this package, one module per concern:
config, data, models, train, store, scores, attacks, metrics, pools, generate,
calibration, privacy, plots, claims, report, run.
"""

from pathlib import Path

__version__ = "0.1.0"
REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout: params/, notebooks/, data/, outputs/
