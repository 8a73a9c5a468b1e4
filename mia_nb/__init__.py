"""mia-nb: a reproducible study of score-based membership inference attacks.

The notebooks narrate; every piece of logic lives here, in stages that data flows through one way, by files under
outputs/<profile>/ (docs/CONVENTIONS.md: the module map, the layering, and recipes for extending the study):

    config, layout, store, versions,  the shared context: the profile schema, the outputs layout, the content-
    study, tables                     addressed store and its code versions, the run context, result tables
    data/      images: the dataset catalog and loaders, seeded splits, the non-member pools (`POOLS`), the GAN
    models/    networks (`ARCHITECTURES`), training, DP-SGD, jobs through the engine, calibration, variants
    attacks/   scores, the score-based attacks (`ATTACKS`), thresholds, metrics, per-image sample files,
               the one evaluation route, LiRA / RMIA and their reference models, notebook 05's read-outs
    claims/    paired bootstrap statistics, the paper's findings as claims with bands, trade-off tables
    report/    each notebook's figures, the HTML report, the summary the README's findings come from
    runner/    `python -m mia_nb run`: the notebook plan, chains on threads, the training phase, the CLI

What the notebooks call (each cell a line or two):

    study.open_study(params_file, outputs_root, seed)     the `Study` of one seed (None: the profile's first):
                                                          profile, folders, splits, store; `save_figure`,
                                                          `save_table` write figures/ and results/ where the runner does
    study.open_summary, seeds_with_samples                the claims notebook's context over the seeds that ran
    models.jobs.trained / ensure, variants.pair_requests  the target and shadow (notebooks 02, 03)
    data.nonmembers.pool_specs, part_spec                 the non-member pools and split parts a variant is read on
    models.variants.vanilla, with_temperature, fitted_temperature, llla, retrained + *_recipe   the variants
    attacks.evaluation.evaluate(study, variant, pools)    the one route to attacks.csv, variants.csv, samples/
    attacks.ood_readouts, attacks.reference_models        notebook 05's read-outs; LiRA / RMIA (notebook 08)
    claims.findings.load_seed, check, check_only          verdicts with paired intervals (notebooks 06, 07, 09);
    claims.tradeoff, claims.separation                    the trade-off and separate-vs-align tables
    report.figures_<topic>                                each notebook's figures, returned as a matplotlib Figure
"""

from pathlib import Path

__version__ = "0.1.0"
REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout: params/, notebooks/, data/, outputs/
