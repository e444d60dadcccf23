"""The Memory panel shows the arbiter's ledger, read off the GUI thread, and copes with no arbiter."""

from __future__ import annotations

import pytest

from app.memory_panel import NOT_RUNNING, MemoryPanel, MemoryState
from workers.arbiter.messages import LeaseInfo, LedgerSnapshot, Tier, WaitInfo
from workers.arbiter.units import GiB, MiB
from workers.protocol import Priority

SNAPSHOT = LedgerSnapshot(
    budget=6 * GiB,
    total=8 * GiB,
    headroom=512 * MiB,
    used_outside=1536 * MiB,
    device="simulated 8 GiB",
    leases=(
        LeaseInfo(
            lease_id="l1",
            owner="image worker",
            pid=42,
            job="demo-sd",
            priority=Priority.single_shot,
            bytes=3 * GiB,
            tier="resident",
            idle=True,
            revoking=False,
        ),
    ),
    waiting=(
        WaitInfo(
            request_id="r1",
            owner="video worker",
            job="demo-animatediff",
            priority=Priority.background,
            reason="waiting for 4.0 GiB; 3.0 GiB free",
        ),
    ),
)


class ScriptedReader:
    def __init__(self, snapshot):
        self.snapshot = snapshot

    def read(self):
        return self.snapshot

    def close(self):
        pass


@pytest.fixture
def make_panel(qtbot):
    states = []

    def make(reader_factory=None):
        state = MemoryState(interval_s=0.1, **({"reader_factory": reader_factory} if reader_factory else {}))
        panel = MemoryPanel(state)
        qtbot.addWidget(panel)
        panel.show()
        states.append(state)
        return panel

    yield make
    for state in states:
        state.stop(wait_s=5)


def test_panel_shows_budget_leases_and_waiting_requests(qtbot, make_panel):
    panel = make_panel(lambda: ScriptedReader(SNAPSHOT))
    qtbot.waitUntil(lambda: panel.state.snapshot is not None, timeout=5000)
    assert panel.figures["budget"].text() == "6.0 GiB"
    assert panel.figures["outside"].text() == "1.5 GiB"
    assert panel.figures["free"].text() == "3.0 GiB"
    assert [panel.leases.item(0, c).text() for c in range(3)] == ["image", "3.0 GiB", "resident, idle (warm)"]
    assert "demo-sd (image worker)" in panel.leases.item(0, 0).toolTip()
    assert panel.waiting.item(0, 3).text() == "waiting for 4.0 GiB; 3.0 GiB free"
    assert panel.usage.value() == 500 and panel.usage.format() == "3.0 GiB of 6.0 GiB leased"


def test_on_a_cluster_each_nodes_arbiter_has_a_row(qtbot):
    """The window's supervisor on a Ray cluster reads every node's arbiter: one row per node, with
    its own device, budget and leases; a cluster that stops answering empties the table, no crash."""
    from dataclasses import replace

    answers = [{"desk": SNAPSHOT, "server": replace(SNAPSHOT, device="simulated 24 GiB", leases=())}]

    def node_ledgers():
        if not answers:
            raise ConnectionError("the cluster is gone")
        return answers[0]

    state = MemoryState(
        interval_s=0.1, reader_factory=lambda: ScriptedReader(SNAPSHOT), node_ledgers=node_ledgers
    )
    panel = MemoryPanel(state)
    qtbot.addWidget(panel)
    panel.show()
    try:
        qtbot.waitUntil(lambda: panel.nodes.rowCount() == 2, timeout=5000)
        rows = [[panel.nodes.item(r, c).text() for c in range(5)] for r in range(2)]
        assert rows[0] == ["desk", "simulated 8 GiB", "3.0 GiB of 6.0 GiB", "3.0 GiB", "1 leased, 1 waiting"]
        assert rows[1][:2] == ["server", "simulated 24 GiB"] and rows[1][4] == "0 leased, 1 waiting"
        assert panel.nodes.isVisibleTo(panel)
        answers.clear()
        qtbot.waitUntil(lambda: panel.nodes.rowCount() == 0, timeout=5000)
        assert (
            not panel.nodes.isVisibleTo(panel) and panel.state.snapshot is not None
        )  # local panel still polls
    finally:
        state.stop(wait_s=5)


def test_off_a_cluster_there_is_no_nodes_table(qtbot, make_panel):
    panel = make_panel(lambda: ScriptedReader(SNAPSHOT))
    qtbot.waitUntil(lambda: panel.state.snapshot is not None, timeout=5000)
    assert not panel.nodes.isVisibleTo(panel) and panel.state.node_ledgers is None


def test_panel_says_so_when_no_arbiter_runs(qtbot, make_panel):
    panel = make_panel()
    qtbot.waitUntil(lambda: panel.state.polled, timeout=5000)
    assert panel.status.text() == NOT_RUNNING
    assert panel.leases.rowCount() == 0


def test_panel_shows_a_real_arbiters_lease(qtbot, make_panel):
    from workers.arbiter.client import ArbiterClient

    with ArbiterClient("test worker") as client:
        lease = client.acquire(
            "test job", Priority.single_shot, [Tier(name="resident", bytes=256 * MiB)], timeout=30
        )
        panel = make_panel()
        qtbot.waitUntil(lambda: bool(panel.state.snapshot and panel.state.snapshot.leases), timeout=15000)
        assert panel.leases.item(0, 0).text() == "test"
        assert [panel.leases.item(0, c).text() for c in (1, 2)] == ["256 MiB", "resident, active"]
        lease.release()


def test_polling_stops_when_the_panel_is_hidden(qtbot, make_panel):
    panel = make_panel(lambda: ScriptedReader(SNAPSHOT))
    qtbot.waitUntil(lambda: panel.state.running, timeout=2000)
    panel.hide()
    assert not panel.state.running


def test_polling_resumes_when_the_panel_is_shown_again(qtbot, make_panel):
    panel = make_panel(lambda: ScriptedReader(SNAPSHOT))
    qtbot.waitUntil(lambda: panel.state.running, timeout=2000)
    panel.hide()
    panel.show()
    assert panel.state.running


def test_a_render_paused_for_a_stronger_job_says_so(qtbot, make_panel):
    from dataclasses import replace

    paused = replace(
        SNAPSHOT.leases[0],
        owner="video-worker",
        job="video:demo-animatediff",
        priority=Priority.background,
        bytes=5 * GiB,
        tier="sliced-2",
        idle=False,
        throttled=True,
    )
    panel = make_panel(lambda: ScriptedReader(replace(SNAPSHOT, leases=(paused,))))
    qtbot.waitUntil(lambda: panel.state.snapshot is not None, timeout=5000)
    assert [panel.leases.item(0, c).text() for c in range(3)] == [
        "video",
        "5.0 GiB",
        "sliced-2, paused for a stronger job",
    ]


def test_keep_free_is_saved_for_the_arbiter(qtbot, make_panel):
    from workers.arbiter.user_config import load

    panel = make_panel(lambda: ScriptedReader(SNAPSHOT))
    assert panel.keep_free.value() == 0.5, "the default headroom, 512 MiB"
    panel.keep_free.setValue(2.5)
    panel.keep_free.editingFinished.emit()
    assert load().headroom == int(2.5 * GiB)
    assert "Keeping 2.5 GiB free" in panel.status.text()
