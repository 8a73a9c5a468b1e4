"""Stage 2, models: networks, the training loop, DP-SGD, training jobs through the engine, calibration, variants.

`networks` (architectures), `device` (the profile's torch device), `training` (the loop), `privacy`
(Opacus), `engine` (joblib / Ray jobs), `jobs` (config -> stored model), `calibration` (temperature,
last-layer Laplace), `variants` (how a variant's probabilities are read out: vanilla, post-hoc and retrained).
"""
