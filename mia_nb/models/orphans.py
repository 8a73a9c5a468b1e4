"""A worker's watch on the process that started it: the engine's loky workers run `end_with_parent` first, so
they end within a fraction of a second when the runner dies, SIGKILL included (a killed process cannot stop its
workers itself, and loky's would otherwise finish their jobs and idle for minutes). Kept apart from
`mia_nb.models.engine` so that a starting worker imports only this (no torch) before the watch begins.

Ctrl-C reaches every process of the terminal's group, the workers too; the runner stops them itself. A worker
therefore starts with SIGINT blocked (`QuietStartContext`) and its initializer ignores it: without that, a
Ctrl-C while a worker still imports prints that worker's traceback under the runner's one-line message."""

from __future__ import annotations

import os
import signal
import threading
import time

from joblib.externals.loky.backend.context import LokyContext
from joblib.externals.loky.backend.process import LokyProcess

PARENT_POLL_S = 0.25  # how often a worker checks that the process that started it is still there


def _watch_parent(parent: int) -> None:
    """Poll until this process's parent is no longer `parent` (it died and the process was adopted), then end."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)  # nobody is left to take the result; no cleanup handler may block the exit


class _QuietStartProcess(LokyProcess):
    """A loky worker process spawned with SIGINT blocked; the mask survives the exec, so the worker cannot be
    interrupted before `end_with_parent` sets SIGINT to ignored."""

    @staticmethod
    def _Popen(process_obj):  # noqa: N802 - loky's name
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return LokyProcess._Popen(process_obj)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class QuietStartContext(LokyContext):
    """loky's context with workers that start deaf to Ctrl-C (`_QuietStartProcess`)."""

    Process = _QuietStartProcess


QUIET_START = QuietStartContext()  # one instance: loky reuses its pool only while the context is the same


def end_with_parent(parent: int) -> None:
    """Worker initializer: ignore Ctrl-C (the runner stops its workers; a SIGINT that came while this worker
    started is dropped) and end this worker when `parent` (the process that started the pool) dies, however it
    dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if os.getppid() != parent:  # it died while this worker started
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="mia-nb-parent-watch", daemon=True).start()
