"""A worker's watch on the process that started it: the engine's loky workers run `end_with_parent` first, so
they end within a fraction of a second when the runner dies, SIGKILL included (a killed process cannot stop its
workers itself, and loky's would otherwise finish their jobs and idle for minutes). Kept apart from
`mia_nb.models.engine` so that a starting worker imports only this (no torch) before the watch begins."""

from __future__ import annotations

import os
import threading
import time

PARENT_POLL_S = 0.25  # how often a worker checks that the process that started it is still there


def _watch_parent(parent: int) -> None:
    """Poll until this process's parent is no longer `parent` (it died and the process was adopted), then end."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)  # nobody is left to take the result; no cleanup handler may block the exit


def end_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when `parent` (the process that started the pool) dies, however it
    dies."""
    if os.getppid() != parent:  # it died while this worker started
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="mia-nb-parent-watch", daemon=True).start()
