"""Jupyter server settings for `make lab` (`jupyter lab --config=jupyter_server_config.py`).

Every save of a notebook under notebooks/, autosave included, goes through `mia_nb.runner.lab.pre_save_hook`,
which writes it in its committed form: no outputs, no execution counts, nothing the editor adds by itself. The
committed notebooks stay clean while you run them; the browser keeps showing the outputs. Notebooks elsewhere
(the executed copies under outputs/) are saved as they are.
"""

c = get_config()  # noqa: F821 - Jupyter defines get_config when it reads this file
c.ContentsManager.pre_save_hook = "mia_nb.runner.lab.pre_save_hook"
