"""The headless runner behind `python -m mia_nb`: `cli` (the command line and its one-line errors),
`pipeline` (a whole run: preflight, the data, training, per-seed and summary phases, the report),
`plan` (which notebooks run, their roles read from the notebooks' metadata, the jobs per seed,
fingerprints), `chains` (notebooks through papermill, chains on threads, progress, heal lines, Ctrl-C),
`training` (the training phase between the data and the per-seed notebooks), `outputs` (the outputs
folder: outside the source tree, writable, room for the run) and `written` (the sha256 of what each
notebook wrote, checked before a notebook counts as up to date)."""
