"""Browser-test fixtures: a JupyterLab server, Debian's headless Chromium driven by Playwright, and notebooks.

The recipe is the one in BROWSER-TESTING.md (proven on this machine kind): Chromium comes from Debian
(`apt-get install chromium fonts-liberation`, done by `.ci/run`), never from `playwright install`. Every request the
page makes to a host other than 127.0.0.1 is aborted and recorded, and each test asserts that none was attempted:
the widgets must render without a CDN, as they must in VS Code behind a firewall.

Screenshots go to `test-artifacts/screenshots/` (git-ignored); its path is printed at the end of the run.
Without Chromium or Playwright (or npm, for the VS Code proxy page) the browser tests fail in CI (`CI` set) and are
skipped elsewhere.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("TFOPT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
LOCAL_HOSTS = {"127.0.0.1"}
SERVER_START_TIMEOUT_S = 60
KERNEL_TIMEOUT_MS = 90_000
VIEWPORT = {"width": 1400, "height": 1600}  # tall enough for a whole Studio in a screenshot


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _unavailable(reason: str):
    """Fail in CI (the browser tier must run there), skip on a developer machine without a browser."""
    if _in_ci():
        pytest.fail(f"{reason} (CI is set, so the browser tests must run; .ci/run installs Chromium)", pytrace=False)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter):
    if SCREENSHOTS.is_dir() and any(SCREENSHOTS.iterdir()):
        terminalreporter.write_line(f"browser test screenshots: {SCREENSHOTS}")


# ---------------------------------------------------------------------------------------------------------------
# JupyterLab


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterServer:
    """A `jupyter lab` (or `jupyter server`) process on 127.0.0.1 with its own config, data, runtime and root dirs."""

    def __init__(self, base: Path, app: str = "lab", extra_args: tuple[str, ...] = ()):
        self.root = base / "root"
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config, data, runtime = base / "config", base / "data", base / "runtime"
        for folder in (self.root, config / "labconfig", data, runtime):
            folder.mkdir(parents=True, exist_ok=True)
        # The announcements toast ("Would you like to receive official Jupyter news?") would cover widgets.
        (config / "labconfig" / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_DATA_DIR": str(data),
               "JUPYTER_RUNTIME_DIR": str(runtime), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        args = [sys.executable, "-m", "jupyter", app, "--no-browser", "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}", *extra_args]
        if app == "lab":
            args += ["--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
                     "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--allow-root")
        self.log = base / "server.log"
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(args, env=env, stdout=self._log_file, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"jupyter did not answer /api/status within {SERVER_START_TIMEOUT_S} s:\n{self.log_tail()}")

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 10):
        request = urllib.request.Request(self.url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def log_tail(self, n: int = 4000) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")[-n:]

    def stop(self):
        if self.process.poll() is None:
            try:
                self.api("POST", "/api/shutdown", timeout=5)
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        self._log_file.close()


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory):
    """A JupyterLab server for the session; notebooks are written into `jupyter_lab.root`."""
    pytest.importorskip("jupyterlab")
    server = JupyterServer(tmp_path_factory.mktemp("jupyterlab"))
    yield server
    server.stop()


# ---------------------------------------------------------------------------------------------------------------
# Chromium


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, launched by Playwright (no downloaded browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium fonts-liberation "
                     "(never `playwright install`)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageLog:
    """What a page did besides its work: requests it tried to send off this machine, dialogs, errors."""

    def __init__(self):
        self.external_requests: list[str] = []
        self.dialogs: list[str] = []
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []


@pytest.fixture
def page_log():
    return PageLog()


@pytest.fixture
def page(browser, page_log, request):
    """A fresh page whose requests to anything but 127.0.0.1 are aborted and recorded in `page_log`.

    After the test the page is screenshotted as `<test name>-final.png` (also when the test fails).
    """
    context = browser.new_context(viewport=VIEWPORT)

    def guard(route):
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or parts.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            page_log.external_requests.append(url)
            route.abort()

    context.route("**/*", guard)
    new_page = context.new_page()
    new_page.set_default_timeout(30_000)

    def on_dialog(dialog):
        page_log.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    new_page.on("dialog", on_dialog)
    new_page.on("pageerror", lambda error: page_log.page_errors.append(str(error)))
    new_page.on("console", lambda msg: msg.type == "error" and page_log.console_errors.append(msg.text))
    yield new_page
    try:
        screenshot(new_page, request.node.name, "final")
    finally:
        context.close()


def screenshot(page, test_name: str, label: str, locator=None) -> Path:
    """Saves a PNG of the page (or of one element) as `<test name>-<label>.png` in the screenshots folder."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{test_name}-{label}.png"
    (locator or page).screenshot(path=str(path), **({} if locator else {"full_page": True}))
    return path


@pytest.fixture
def shot(page, request):
    """`shot(label, locator=None)`: a screenshot named after the current test."""
    return lambda label, locator=None: screenshot(page, request.node.name, label, locator)


# ---------------------------------------------------------------------------------------------------------------
# VS Code's widget renderer outside VS Code (see tests/browser/test_vscode.py)

PROXY = Path(__file__).parent / "vscode"
NBEXTENSIONS = Path(sys.prefix) / "share" / "jupyter" / "nbextensions"
NPM_TIMEOUT_S = 300


def _npm(*args: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("npm is needed to build the VS Code proxy page (tests/browser/vscode)")
    result = subprocess.run([npm, *args], cwd=PROXY, capture_output=True, text=True, timeout=NPM_TIMEOUT_S,
                            check=False)
    assert result.returncode == 0, f"npm {' '.join(args)} failed in {PROXY}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


@pytest.fixture(scope="session")
def vscode_proxy_site(tmp_path_factory):
    """A folder served over HTTP: the page, its bundle, requirejs and the environment's nbextensions."""
    installed = PROXY / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < (PROXY / "package-lock.json").stat().st_mtime:
        _npm("ci", "--no-audit", "--no-fund")
    _npm("run", "build")
    site = tmp_path_factory.mktemp("vscode-proxy")
    shutil.copy(PROXY / "page.html", site / "index.html")
    shutil.copy(PROXY / "dist" / "page.js", site / "page.js")
    shutil.copy(PROXY / "node_modules" / "requirejs" / "require.js", site / "require.js")
    (site / "nbextensions").symlink_to(NBEXTENSIONS, target_is_directory=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()),
                                             functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory):
    """`jupyter server` that the page, served from another origin, may call (allow_origin=*)."""
    server = JupyterServer(tmp_path_factory.mktemp("jupyter-server"), app="server",
                           extra_args=("--ServerApp.allow_origin=*",))
    yield server
    server.stop()


# ---------------------------------------------------------------------------------------------------------------
# A minimal anywidget: proves a harness end to end (render, click to Python, Python to page) without the Studio.

COUNTER_SOURCE = """
import anywidget
import traitlets

class Counter(anywidget.AnyWidget):
    _esm = '''
    function render({ model, el }) {
      const button = document.createElement("button");
      button.setAttribute("aria-label", "count clicks");
      const show = () => { button.textContent = `clicks: ${model.get("clicks")}`; };
      button.addEventListener("click", () => { model.set("clicks", model.get("clicks") + 1); model.save_changes(); });
      model.on("change:clicks", show);
      show();
      el.replaceChildren(button);
    }
    export default { render };
    '''
    clicks = traitlets.Int(0).tag(sync=True)
"""


@pytest.fixture
def counter_source() -> str:
    """Python source that defines `Counter`, an anywidget with a button named "count clicks" and a synced `clicks`."""
    return COUNTER_SOURCE


# ---------------------------------------------------------------------------------------------------------------
# Notebooks in JupyterLab

_KERNEL_IDLE = """() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = widget && widget.sessionContext && widget.sessionContext.session
    && widget.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""

_EXECUTE = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, store_history: false, silent: false});
  let out = '';
  let stderr = '';
  let error = null;
  future.onIOPub = (msg) => {
    const type = msg.header.msg_type;
    // stderr also carries what other threads log meanwhile (TensorFlow's converter, for one): kept apart.
    if (type === 'stream' && msg.content.name === 'stderr') stderr += msg.content.text;
    else if (type === 'stream') out += msg.content.text;
    else if (type === 'execute_result') out += msg.content.data['text/plain'];
    else if (type === 'error') error = `${msg.content.ename}: ${msg.content.evalue}`;
  };
  await future.done;
  return {out, stderr, error};
}"""


class Notebook:
    """An open notebook in JupyterLab: run code in its kernel, find its outputs."""

    def __init__(self, page, path: Path):
        self.page = page
        self.path = path
        self.stderr = ""  # what the kernel wrote to stderr during execute() calls

    def execute(self, code: str, timeout_ms: int = KERNEL_TIMEOUT_MS) -> str:
        """Runs code in the notebook's kernel (not as a cell) and returns its stdout; raises on an error."""
        self.page.set_default_timeout(timeout_ms)
        try:
            result = self.page.evaluate(_EXECUTE, code)
        finally:
            self.page.set_default_timeout(30_000)
        self.stderr += result["stderr"]
        if result["error"]:
            raise AssertionError(f"kernel raised {result['error']}\nwhile running:\n{code}")
        return result["out"]

    def output(self, index: int):
        """The output area of the index-th code cell."""
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea")

    def cell_errors(self) -> list[str]:
        return self.page.locator(".jp-Notebook .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                                 ).all_inner_texts() + self.page.locator(
            ".jp-Notebook .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").all_inner_texts()


def write_notebook(folder: Path, name: str, cells: list[str]) -> Path:
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{name}.ipynb"
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def open_notebook(page, jupyter_lab, request):
    """`open_notebook(cells, run=True) -> Notebook`: writes the cells as a notebook, opens it in JupyterLab, waits
    for its kernel, runs all cells and waits until they finished."""

    def open_(cells: list[str], run: bool = True, timeout_ms: int = KERNEL_TIMEOUT_MS) -> Notebook:
        path = write_notebook(jupyter_lab.root, request.node.name, cells)
        page.goto(f"{jupyter_lab.url}/lab/tree/{path.name}?reset&token={jupyter_lab.token}")
        page.wait_for_function(_KERNEL_IDLE, timeout=timeout_ms, polling=200)
        notebook = Notebook(page, path)
        if run:
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # run-all resolves before the last cell finished; wait until every cell has an execution count and the
            # kernel is idle again.
            page.wait_for_function(
                """(n) => {
                  const nb = window.jupyterapp.shell.currentWidget.content;
                  const cells = nb.widgets.filter((c) => c.model.type === 'code');
                  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
                  return cells.length === n && cells.every((c) => c.model.executionCount !== null)
                    && kernel.status === 'idle';
                }""", arg=len(cells), timeout=timeout_ms, polling=200)
        return notebook

    yield open_
    # Leave no kernel behind between tests: the server lives for the whole session.
    try:
        for session in jupyter_lab.api("GET", "/api/sessions"):
            jupyter_lab.api("DELETE", f"/api/sessions/{session['id']}")
    except (urllib.error.URLError, OSError):
        pass


@pytest.fixture(autouse=True)
def _check_no_external_requests(request, page_log):
    """Every browser test asserts that its page tried no request off this machine and opened no dialog."""
    yield
    if "page" in request.fixturenames:
        assert not page_log.external_requests, f"requests to other hosts were attempted: {page_log.external_requests}"
        assert not page_log.dialogs, f"dialogs were opened: {page_log.dialogs}"


@pytest.fixture
def jupyterlab_theme(page):
    """Switches JupyterLab's theme ("JupyterLab Dark" or "JupyterLab Light") and waits until it applies. JupyterLab
    keeps the choice in the server's settings, which every later test shares: a test that leaves it dark is put back
    to light at teardown, so the next one starts where it expects."""
    chosen = []

    def switch(theme: str) -> None:
        page.evaluate("(theme) => window.jupyterapp.commands.execute('apputils:change-theme', {theme})", theme)
        light = "false" if "Dark" in theme else "true"
        page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'")
        page.wait_for_timeout(300)  # the theme's stylesheet settles
        chosen.append(theme)

    yield switch
    if chosen and chosen[-1] != "JupyterLab Light":
        switch("JupyterLab Light")
