"""The dashboard in a real browser (Debian's headless chromium through selenium),
against our daemon and against Debian's dockerd: the container list and its
actions, logs that follow, a terminal, graphs, a pull with its progress bar, and
every page rendered (screenshots in tests/ui/artifacts/<engine>/)."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).parents[1] / "registry"))


def _state(engine, name: str) -> str:
    r = engine.docker("inspect", "-f", "{{.State.Status}}", name, check=False)
    return r.stdout.strip() if r.returncode == 0 else "gone"


def _wait(cond, timeout=20.0, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _row(page, name: str):
    return page.css(f'#containers-table tr[data-name="{name}"]')


def _click_action(page, name: str, action: str, confirm: bool) -> None:
    page.click(f'#containers-table tr[data-name="{name}"] button[data-action="{action}"]')
    if confirm:
        page.wait(lambda b: page.css("#modal").is_displayed(), what="the confirmation")
        page.css("#modal-ok").click()


def test_container_list_start_stop_remove(page):
    eng = page.engine
    n = uuid.uuid4().hex[:6]
    web, idle = f"web{n}", f"idle{n}"
    eng.docker("run", "-d", "--name", web, "--network", "none", "busybox",
               "sh", "-c", "while true; do echo tick; sleep 1; done")
    eng.docker("create", "--name", idle, "--network", "none", "busybox", "sleep", "1000")
    page.go("/containers")
    page.wait(lambda b: page.css_all(f'tr[data-name="{web}"]') and page.css_all(f'tr[data-name="{idle}"]'),
              what="both containers listed")
    assert _row(page, web).get_attribute("data-state") == "running"
    assert _row(page, idle).get_attribute("data-state") == "created"
    # a live CPU sparkline for the running one
    page.wait(lambda b: page.css_all(f'tr[data-name="{web}"] svg.spark polyline'), timeout=30,
              what="a sparkline with points")
    page.shot("containers")

    _click_action(page, idle, "start", confirm=False)
    _wait(lambda: _state(eng, idle) == "running", what=f"{idle} running")
    page.wait(lambda b: _row(page, idle).get_attribute("data-state") == "running", what="the row updated by events")

    _click_action(page, idle, "stop", confirm=True)
    _wait(lambda: _state(eng, idle) == "exited", timeout=30, what=f"{idle} exited")
    page.wait(lambda b: _row(page, idle).get_attribute("data-state") == "exited", timeout=30,
              what="the row shows exited")

    # a cancelled confirmation does nothing
    _click_action(page, idle, "remove", confirm=False)
    page.wait(lambda b: page.css("#modal").is_displayed())
    page.css("#modal-cancel").click()
    time.sleep(0.5)
    assert _state(eng, idle) == "exited"

    _click_action(page, idle, "remove", confirm=True)
    _wait(lambda: _state(eng, idle) == "gone", what=f"{idle} removed")
    page.wait(lambda b: not page.css_all(f'tr[data-name="{idle}"]'), what="the row gone")
    eng.docker("rm", "-f", web)


def test_logs_follow_and_search(page):
    eng = page.engine
    name = f"logs{uuid.uuid4().hex[:6]}"
    eng.docker("run", "-d", "--name", name, "--network", "none", "busybox", "sh", "-c",
               'i=0; while true; i=$((i+1)); do echo "line $i"; echo "err $i" >&2; sleep 0.3; done')
    try:
        page.go(f"/container/{name}/logs")
        page.wait(lambda b: len(page.css_all("#log-view .log-line")) >= 4, what="log lines")
        first = len(page.css_all("#log-view .log-line"))
        page.wait(lambda b: len(page.css_all("#log-view .log-line")) >= first + 6, what="more lines (follow)")
        texts = [e.text for e in page.css_all("#log-view .log-line")[:6]]
        assert any(t.startswith("line ") for t in texts) and any(t.startswith("err ") for t in texts), texts
        assert page.css_all("#log-view .log-line.stderr"), "stderr lines marked"
        page.css("#log-search").send_keys("err ")
        visible = [e for e in page.css_all("#log-view .log-line") if e.is_displayed()]
        assert visible and all(e.text.startswith("err ") for e in visible)
        page.shot("container-logs")
    finally:
        eng.docker("rm", "-f", name)


def _term_text(page) -> str:
    return page.b.execute_script("""
        const t = window.dockyardTerm; if (!t) return "";
        const b = t.buffer.active, out = [];
        for (let i = 0; i < b.length; i++) { const l = b.getLine(i); if (l) out.push(l.translateToString(true)); }
        return out.join("\\n");""")


def test_terminal_runs_a_command_and_ctrl_c(page):
    from selenium.webdriver.common.keys import Keys

    eng = page.engine
    name = f"term{uuid.uuid4().hex[:6]}"
    eng.docker("run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "1000")
    try:
        page.go(f"/container/{name}/terminal")
        page.wait(lambda b: page.css("#terminal").get_attribute("data-connected") == "1", what="terminal connected")
        page.wait(lambda b: "#" in _term_text(page), what="a shell prompt")
        box = page.css("#terminal .xterm-helper-textarea")
        box.send_keys("echo $((6*7))marker; tty; stty size\n")
        text = page.wait(lambda b: "42marker" in _term_text(page) and _term_text(page), what="the command's output")
        assert "/dev/pts/" in text, text           # a real tty
        rows_cols = [l.split() for l in text.splitlines() if l.strip() and l.split()[0].isdigit()]
        assert rows_cols and int(rows_cols[-1][1]) > 80, text   # resized to the widget
        box.send_keys("sleep 100\n")
        time.sleep(0.5)
        box.send_keys(Keys.CONTROL, "c")
        box.send_keys("echo after-$((1+1))\n")
        page.wait(lambda b: "after-2" in _term_text(page), timeout=10, what="the shell back after Ctrl-C")
        page.shot("container-terminal")
    finally:
        eng.docker("rm", "-f", name)


def test_graphs_draw_points(page):
    eng = page.engine
    name = f"busy{uuid.uuid4().hex[:6]}"
    eng.docker("run", "-d", "--name", name, "--network", "none", "busybox", "sh", "-c",
               "while true; do :; done")
    try:
        page.go(f"/container/{name}/stats")
        page.wait(lambda b: int(page.css("#graph-cpu").get_attribute("data-points")) >= 4, timeout=30,
                  what="4 CPU points")
        page.wait(lambda b: int(page.css("#graph-net").get_attribute("data-points")) >= 3, timeout=30)
        # the CPU curve is drawn: the canvas has the series' colour in it
        drawn = page.b.execute_script("""
            const c = document.querySelector('#graph-cpu canvas'); const g = c.getContext('2d');
            const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] === 88 && d[i+1] === 166 && d[i+2] === 255) n++;
            return n;""")
        assert drawn > 20, drawn
        page.shot("container-stats")
        page.css("#tab-processes").click()
        page.wait(lambda b: page.css_all("#top-table tbody tr"), what="processes")
        page.shot("container-processes")
        eng.docker("exec", name, "touch", "/made-by-test")
        page.css("#tab-changes").click()
        page.wait(lambda b: "/made-by-test" in page.css("#panel").text, what="the change listed")
        page.shot("container-changes")
        page.css("#tab-overview").click()
        page.wait(lambda b: "Configuration" in page.css("#panel").text)
        page.shot("container-overview")
    finally:
        eng.docker("rm", "-f", name)


def test_pull_with_progress_bar(page, tmp_path):
    from registry_helpers import running_registry

    eng = page.engine
    with running_registry(tmp_path / "reg") as reg:
        ref = f"{reg.addr}/ui/big:v1"
        mk = f"mk{uuid.uuid4().hex[:6]}"
        eng.docker("run", "--name", mk, "--network", "none", "busybox", "sh", "-c",
                   "dd if=/dev/urandom of=/big bs=1M count=24 2>/dev/null")
        eng.docker("commit", mk, ref)
        eng.docker("rm", mk)
        eng.docker("push", ref, timeout=300)
        eng.docker("rmi", ref)
        page.go("/images")
        page.wait(lambda b: page.css_all("#images-table tbody tr"))
        page.css("#pull-input").send_keys(ref)
        page.css("#pull-button").click()
        page.wait(lambda b: "done" in page.css("#pull-status").text or "error" in page.css("#pull-status").text,
                  timeout=120, what="the pull to end")
        assert page.css("#pull-status").text.endswith("done"), page.css("#pull-status").text
        bar = page.css("#pull-bar")
        assert "done" in bar.get_attribute("class")
        history = [float(x) for x in bar.get_attribute("data-history").split(",")]
        assert history[-1] == 100.0 and history == sorted(history), history
        assert eng.out("images", "-q", ref)
        page.wait(lambda b: any(ref in e.text for e in page.css_all("#images-table .tag")), what="listed")
        page.shot("images")
        # layers and history of the pulled image
        page.click(f'#images-table tr[data-ref="{ref}"] button[data-action="detail"]')
        page.wait(lambda b: page.css_all("#history-table tbody tr"), what="the history")
        page.shot("image-detail")
        eng.docker("rmi", ref)


def test_other_pages_render(page):
    eng = page.engine
    page.go("/events")
    page.wait(lambda b: page.css("main").get_attribute("data-page") == "events")
    time.sleep(0.5)
    name = f"ev{uuid.uuid4().hex[:6]}"
    eng.docker("create", "--name", name, "--network", "none", "busybox", "true")
    page.wait(lambda b: name in page.css("#events-table").text, what="the create event shown live")
    page.shot("events")
    eng.docker("rm", name)
    page.go("/networks")
    r = eng.docker("network", "ls", "--format", "{{.Name}}", check=False)
    if r.returncode == 0:
        nets = r.stdout.split()
        page.wait(lambda b: all(n in page.css("#networks-table").text for n in nets), what=f"networks {nets} listed")
    else:   # an engine without networking (our daemon with --bridge none): its error, shown
        page.wait(lambda b: page.css_all("#networks-table td.error"), what="the engine's error")
    page.shot("networks")
    page.go("/volumes")
    page.wait(lambda b: page.css_all("#volumes-table tbody tr"), what="the volumes table")
    page.shot("volumes")
    page.go("/system")
    page.wait(lambda b: page.css_all("#diskbar .seg") or page.css_all("#sys .error"), what="disk usage")
    assert page.css_all("#diskbar .seg"), page.css("#sys").text
    assert "Kernel" in page.css("#sys").text
    page.shot("system")
