"""Fixtures for the dashboard's tests: an engine (our daemon, or Debian's dockerd),
a `dockyard ui` process talking to it, and Debian's headless chromium driven by
selenium through chromium-driver.

Screenshots go to tests/ui/artifacts/<engine>/ (not committed) for a person to look at.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


class Engine:
    """What a test needs of an engine: its address and the docker CLI against it."""

    def __init__(self, kind: str, host: str, env: dict, dir: Path, forward=None) -> None:
        self.kind, self.host, self.env, self.dir = kind, host, env, dir
        self._forward = forward

    def forward(self, port: int) -> None:
        """Make the host's 127.0.0.1:``port`` (a registry a test started) reachable by the
        engine as 127.0.0.1:``port`` (the test dockerd has a network namespace of its own)."""
        if self._forward is not None:
            self._forward(port)

    def docker(self, *args: str, check: bool = True, input=None, timeout: float = 120) -> subprocess.CompletedProcess:
        r = subprocess.run(["/usr/local/bin/docker", *args], env=self.env, input=input, capture_output=True,
                           timeout=timeout, text=not isinstance(input, bytes))
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {r.returncode}: {r.stdout} {r.stderr}")
        return r

    def out(self, *args: str) -> str:
        return self.docker(*args).stdout.strip()


def _import_busybox(eng: Engine) -> None:
    from helpers.rootfs import build_busybox_rootfs

    root = eng.dir / "bbroot"
    if not root.exists():
        build_busybox_rootfs(root)
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True).stdout
    eng.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)


@contextlib.contextmanager
def running_engine(kind: str, base: Path):
    if kind == "dockyard":
        from acceptance.harness import running

        with running(base) as d:
            yield Engine(kind, d.host, d.env, d.dir)
    else:
        from helpers.dockerd import running_dockerd

        with running_dockerd(base) as d:
            eng = Engine(kind, d.host, d.env, base, forward=d.forward)
            _import_busybox(eng)
            try:
                yield eng
            finally:
                ids = eng.docker("ps", "-aq", check=False).stdout.split()
                if ids:
                    eng.docker("rm", "-f", *ids, check=False)


@pytest.fixture(scope="module", params=["dockyard", "dockerd"])
def engine(request, tmp_path_factory):
    with running_engine(request.param, tmp_path_factory.mktemp(f"ui-{request.param}")) as eng:
        yield eng


class UI:
    def __init__(self, proc: subprocess.Popen, url: str, token: str) -> None:
        self.proc, self.url, self.token = proc, url.rstrip("/"), token

    @property
    def login_url(self) -> str:
        return f"{self.url}/login?token={self.token}"


def start_ui(engine_host: str, *args: str, token: str = "test-token-0123456789",
             timeout: float = 20) -> UI:
    cmd = [sys.executable, "-m", "dockyard", "ui", "--addr", "127.0.0.1:0", "-H", engine_host,
           "--token", token, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            line = proc.stdout.readline()
            break
        if proc.poll() is not None:
            break
    m = re.search(rb"listening on (https?://\S+?)/ ", line)
    if not m:
        stop_ui(proc)
        raise RuntimeError(f"dockyard ui did not start: {line!r} {proc.stderr.read().decode(errors='replace')}")
    return UI(proc, m.group(1).decode(), token)


def stop_ui(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for s in (proc.stdout, proc.stderr):
        if s:
            s.close()


@contextlib.contextmanager
def running_ui(engine_host: str, *args: str, **kw):
    ui = start_ui(engine_host, *args, **kw)
    try:
        yield ui
    finally:
        stop_ui(ui.proc)


@pytest.fixture(scope="module")
def ui(engine):
    with running_ui(engine.host) as u:
        yield u


def new_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("Debian's chromium and chromium-driver are required (scripts/install-deps)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1440,900", "--force-device-scale-factor=1", "--disable-extensions",
              "--no-first-run", "--password-store=basic"):
        opts.add_argument(a)
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))


@pytest.fixture(scope="module")
def browser():
    b = new_browser()
    try:
        yield b
    finally:
        b.quit()


@pytest.fixture
def page(browser, ui, engine):
    """The browser logged in to the UI; ``page.shot(name)`` saves a screenshot."""
    browser.get(ui.login_url)
    return Page(browser, ui, engine)


class Page:
    def __init__(self, browser, ui: UI, engine: Engine) -> None:
        self.b, self.ui, self.engine = browser, ui, engine

    def go(self, hash_: str) -> None:
        self.b.get(f"{self.ui.url}/#{hash_}")

    def wait(self, cond, timeout: float = 20, what: str = ""):
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        from selenium.common.exceptions import TimeoutException

        # live pages re-render their tables: an element read mid-way is tried again
        try:
            return WebDriverWait(self.b, timeout, poll_frequency=0.1,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda b: cond(b), message=what or None)
        except TimeoutException:
            self.shot("FAILED-" + "".join(c if c.isalnum() else "-" for c in what)[:60])
            raise

    def click(self, sel: str, timeout: float = 20) -> None:
        """Click the element ``sel`` names, found again if a re-render replaced it."""
        from selenium.common.exceptions import StaleElementReferenceException

        def attempt(b):
            try:
                els = self.css_all(sel)
                if not els:
                    return False
                els[0].click()
                return True
            except StaleElementReferenceException:
                return False
        self.wait(attempt, timeout, what=f"click {sel}")

    def css(self, sel: str):
        from selenium.webdriver.common.by import By

        return self.b.find_element(By.CSS_SELECTOR, sel)

    def css_all(self, sel: str):
        from selenium.webdriver.common.by import By

        return self.b.find_elements(By.CSS_SELECTOR, sel)

    def shot(self, name: str) -> Path:
        d = ARTIFACTS / self.engine.kind
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{name}.png"
        self.b.save_screenshot(str(p))
        return p
