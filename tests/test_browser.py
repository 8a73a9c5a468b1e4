"""In a real browser: Playwright driving Debian's `chromium` (`make setup` installs both).

(a) report/index.html rendered from hand-made tables and tiny executed notebooks: no image is broken and nothing
is wider than a 1,280-pixel window. (b) JupyterLab started as `make lab` starts it (jupyter_server_config.py, its
save hook in mia_nb/runner/lab.py): notebook 00 opened, Run All Cells through the menu, saved; no cell fails and
the file in notebooks/ is saved without outputs, byte for byte as committed.

Without chromium or Playwright the tests skip with the command that installs them, and fail under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from mia_nb.report.html import write_report
from test_report import make_run  # the hand-made two-seed run of the report's unit tests

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "jupyter_server_config.py"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDTH = 1280  # the window the report must fit
INSTALL = {"chromium": "apt-get update && apt-get install -y chromium (as root; `make setup` does it)",
           "playwright": "pip install -e '.[test]' (`make setup` does it)"}
LESSON = sorted((REPO / "notebooks").glob("00_*.ipynb"))[0]
RUN_ALL_S = 900  # notebook 00 takes about a minute on 2 idle cores; a busy machine gets room


def browser_or_skip() -> None:
    """Skip (fail under CI=true) with the install command when chromium or Playwright is missing."""
    missing = [f"{name}: {INSTALL[name]}" for name, ok in
               (("chromium", CHROMIUM.is_file()), ("playwright", _importable("playwright.sync_api"))) if not ok]
    if missing:
        message = "the browser tests need " + "; ".join(missing)
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A headless chromium (Debian's) driven by Playwright."""
    browser_or_skip()
    from playwright.sync_api import sync_playwright  # a test-only dependency, checked just above
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


BROKEN_IMAGES = "() => Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
OVERFLOW = f"""() => {{
    const wide = Array.from(document.querySelectorAll('body *'))
        .filter(e => e.getBoundingClientRect().right > {WIDTH} + 0.5)
        .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''));
    return {{page: document.documentElement.scrollWidth, wide: wide.slice(0, 8)}};
}}"""


def check_page(browser: object, url: str) -> tuple[list[str], dict]:
    """(broken images, widths) of a page opened in a 1,280-pixel window, after every image has loaded."""
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    try:
        page.goto(url, wait_until="load")
        return page.evaluate(BROKEN_IMAGES), page.evaluate(OVERFLOW)
    finally:
        page.close()


@pytest.mark.slow  # starts chromium
def test_the_checks_catch_a_broken_image_and_a_wide_page(browser, tmp_path):
    """The two checks below can fail: a missing figure and a line wider than the window are found."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!doctype html><html><body><img src="missing.png"><pre>' + "wide " * 400 + "</pre></body></html>",
                   encoding="utf-8")
    broken, widths = check_page(browser, bad.as_uri())
    assert broken and broken[0].endswith("missing.png")
    assert widths["page"] > WIDTH


@pytest.mark.slow  # starts chromium
def test_report_index_has_no_broken_image_and_fits_1280_pixels(browser, tmp_path):
    run, claims, _ = make_run(tmp_path)
    index = write_report(run, title="mia-nb · two")
    broken, widths = check_page(browser, index.as_uri())
    assert not broken, f"broken images: {broken}"
    assert widths["page"] <= WIDTH and not widths["wide"], f"wider than {WIDTH} px: {widths}"
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    try:
        page.goto(index.as_uri(), wait_until="load")
        assert page.locator("section.finding img").count() == 5  # one figure per finding and the extensions
        assert page.locator("table.claims tbody tr").count() == len(claims)
        page.locator("a[href='seed_42_01_data_prep.html']").click()  # a rendered notebook opens from the index
        page.wait_for_load_state("load")
        assert "01_data_prep of seed 42" in page.content()
    finally:
        page.close()


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(tmp_path: Path, port: int, token: str) -> subprocess.Popen:
    """`jupyter lab` with the command line of `make lab` (the repository as root, its server config), on `port`
    with `token`; Jupyter's own state (runtime, data, settings, workspaces) kept in tmp_path."""
    make = shutil.which("make")
    if make:  # the command below is the one `make lab` runs
        dry = subprocess.run([make, "-n", "-s", "lab"], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
        assert f"--config={CONFIG}" in dry and f"--ServerApp.root_dir={REPO}" in dry, dry
    env = {**os.environ, "MIA_NB_PARAMS": str(REPO / "params" / "default.yaml"),
           **{var: str(tmp_path / var.lower()) for var in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR",
                                                           "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR")}}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", f"--config={CONFIG}", f"--ServerApp.root_dir={REPO}",
         "--no-browser", f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", *(["--allow-root"] if os.geteuid() == 0 else []),
         str(LESSON.relative_to(REPO))],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5):
                return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise AssertionError(f"jupyter lab did not answer: {server.stderr.read()[-2000:]}") from None
            time.sleep(0.5)


def has_outputs(nb: nbformat.NotebookNode) -> bool:
    return any(c.get("outputs") or c.get("execution_count") is not None
               for c in nb.cells if c.cell_type == "code")


def git_clean(path: Path) -> bool | None:
    """Whether git sees no change to `path` (None without git or a repository)."""
    try:
        out = subprocess.run(["git", "diff", "--quiet", "--", str(path)], cwd=REPO, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: True, 1: False}.get(out.returncode)


def kernel_state(port: int, token: str) -> str | None:
    """The execution state of the kernel of notebook 00's session on the server, None while it has none."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/sessions?token={token}", timeout=10) as answer:
        sessions = json.load(answer)
    return next((s["kernel"]["execution_state"] for s in sessions
                 if s.get("path", "").endswith(LESSON.name) and s.get("kernel")), None)


def start_kernel(page: object, port: int, token: str, timeout_s: float = 180) -> None:
    """Wait until notebook 00's kernel is idle, choosing the offered kernel ("Select") when JupyterLab asks."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    deadline = time.monotonic() + timeout_s
    while kernel_state(port, token) != "idle":
        if dialog.count() and dialog.first.is_visible():
            dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        assert time.monotonic() < deadline, f"no idle kernel for {LESSON.name} after {timeout_s:.0f} s"
        page.wait_for_timeout(500)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']")


def menu(page: object, title: str, item: str) -> None:
    """Choose `item` (a regular expression for its whole label) in the menu bar's `title` menu, as a user does."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{title}$")).click()
    page.locator("li.lm-Menu-item", has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$"))).click()


ALL_RAN = """n => {
    const prompts = Array.from(document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt'));
    const status = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
    return prompts.length === n && prompts.every(p => /\\[\\d+\\]/.test(p.textContent))
        && status !== null && status.dataset.status === 'idle';
}"""
ERRORS = """() => Array.from(document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output'))
    .map(o => o.textContent).filter(t => t.includes('Traceback (most recent call last)')).map(t => t.slice(0, 600))"""


@pytest.mark.slow  # starts JupyterLab and chromium and runs notebook 00 through the browser (1-3 minutes)
def test_run_all_in_jupyterlab_then_save_keeps_the_committed_notebook_clean(browser, tmp_path):
    before, was_clean = LESSON.read_bytes(), git_clean(LESSON)
    n_code = sum(c.cell_type == "code" for c in nbformat.reads(before.decode("utf-8"), as_version=4).cells)
    port, token = free_port(), "mia-nb-browser-test"
    server = start_lab(tmp_path, port, token)
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    try:
        page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/{LESSON.name}?token={token}")
        start_kernel(page, port, token)
        menu(page, "Run", r"Run All Cells")
        page.wait_for_function(ALL_RAN, arg=n_code, timeout=RUN_ALL_S * 1000, polling=1000)
        errors = page.evaluate(ERRORS)
        assert not errors, f"error output in {LESSON.name}: {errors}"
        saved_before = LESSON.stat().st_mtime_ns
        with page.expect_response(lambda r: r.request.method == "PUT" and "/api/contents/" in r.url,
                                  timeout=60_000) as answer:
            menu(page, "File", r"Save( Notebook)?")
        assert answer.value.status == 200
        assert LESSON.stat().st_mtime_ns > saved_before  # the save went through the server's hook to this file
        assert not has_outputs(nbformat.read(LESSON, as_version=4))
        assert LESSON.read_bytes() == before, f"saving through JupyterLab changed {LESSON.name}"
        if was_clean:
            assert git_clean(LESSON), f"git diff shows {LESSON.name} changed"
    finally:
        page.close()
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        if LESSON.read_bytes() != before:  # never leave the repository dirty, even when the test fails
            LESSON.write_bytes(before)
