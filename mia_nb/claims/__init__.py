"""Stage 4, claims: paired bootstrap statistics and the paper's findings as claims that can fail.

`paired` (vectorised paired statistics), `findings` (claims, bands, verdicts), `tradeoff` (the calibration /
privacy trade-off per variant), `separation` (notebook 07's separate-vs-align table).
"""
