"""Stage 3, attacks: prediction scores, score-based and reference-model attacks, thresholds, metrics, evaluation.

`scores` (softmax, entropy, losses, the `Outputs` pair), `score_based` (threshold, entropy, Salem, loss attacks),
`thresholds` (the threshold-at-FPR rule), `metrics` (ROC, calibration, MMPS), `evaluation` (the one route from a
variant to attacks.csv, variants.csv and the per-image samples), `samples` (the per-image sample files: key
grammar, typed reader and writer), `lira_rmia` (LiRA / RMIA maths) and
`reference_models` (their reference models and pools), `ood_readouts` (notebook 05's read-outs).
"""
