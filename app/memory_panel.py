"""The Memory panel: the VRAM arbiter's live ledger (budget, leases, waiting requests).

The ledger is read on a background thread (a status query can take up to its timeout when the
arbiter is busy or gone), and handed to the GUI thread through a queued signal. The panel never
starts an arbiter: the workers do that when they first need memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, QSize, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.memory_timeline import MemoryTimeline
from workers.arbiter.messages import LedgerSnapshot
from workers.arbiter.records import DEFAULT_HEADROOM
from workers.arbiter.units import GiB, format_bytes
from workers.arbiter.user_config import ArbiterUserConfig, ConfigError
from workers.arbiter.user_config import load as load_user_config
from workers.arbiter.user_config import save as save_user_config

log = logging.getLogger(__name__)

STATUS_TIMEOUT_S = 2.0
MIN_INTERVAL_S = 0.1
NOT_RUNNING = "Arbiter not running: it starts with the first job that needs GPU memory."


class LedgerReader:
    """Keeps one connection to the arbiter and reconnects after it goes away. Not thread-safe:
    ``MemoryState`` calls it from its one polling thread."""

    def __init__(self, owner: str = "memory panel") -> None:
        self.owner = owner
        self._client = None

    def read(self) -> LedgerSnapshot | None:
        """The ledger, or None when no arbiter is running."""
        from workers.arbiter.client import ArbiterClient, ArbiterUnavailable

        try:
            if self._client is None:
                self._client = ArbiterClient(self.owner, autostart=False)
            return self._client.status(timeout=STATUS_TIMEOUT_S)
        except (ArbiterUnavailable, OSError) as exc:
            log.debug("arbiter status unavailable: %s", exc)
            self.close()
            return None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


NodeLedgers = Callable[[], dict[str, LedgerSnapshot]]
"""Each cluster node's arbiter ledger by node name (``ClusterSupervisor.node_ledgers``)."""


class MemoryState(QObject):
    """Polls the ledger while started. ``snapshot_changed(snapshot or None)``: None = arbiter down.

    On a cluster (``node_ledgers`` given) it also polls every node's arbiter:
    ``nodes_changed({node name: snapshot})``, the nodes that answered."""

    snapshot_changed = Signal(object)
    nodes_changed = Signal(object)
    _arrived = Signal(object)
    _nodes_arrived = Signal(object)

    def __init__(
        self,
        interval_s: float = 1.0,
        reader_factory=LedgerReader,
        parent: QObject | None = None,
        node_ledgers: NodeLedgers | None = None,
    ) -> None:
        super().__init__(parent)
        self.node_ledgers = node_ledgers
        self.nodes: dict[str, LedgerSnapshot] = {}
        self._nodes_arrived.connect(self._store_nodes, Qt.ConnectionType.QueuedConnection)
        self.interval_s = max(MIN_INTERVAL_S, interval_s)  # a hand-edited 0 must not spin
        self.snapshot: LedgerSnapshot | None = None
        self.polled = False
        self._reader_factory = reader_factory
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._arrived.connect(self._store, Qt.ConnectionType.QueuedConnection)

    def start(self) -> None:
        if self.running:
            return
        # A thread still finishing its last query after stop() ends on its own event.
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._poll, args=(self._stop,), name="memory panel", daemon=True
        )
        self._thread.start()

    def stop(self, wait_s: float = 0.0) -> None:
        """Stop polling; ``wait_s`` > 0 waits for the polling thread to end (on app exit)."""
        self._stop.set()
        if wait_s and self._thread is not None:
            self._thread.join(wait_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def _poll(self, stop: threading.Event) -> None:
        reader = self._reader_factory()  # one per thread: a restarted poll never shares a connection
        try:
            while not stop.is_set():
                snapshot = reader.read()
                if stop.is_set():
                    break
                try:
                    self._arrived.emit(snapshot)
                    if self.node_ledgers is not None:
                        self._nodes_arrived.emit(self._read_nodes())
                except RuntimeError:  # the panel was deleted while we were asking
                    break
                stop.wait(self.interval_s)
        finally:
            reader.close()

    def _read_nodes(self) -> dict[str, LedgerSnapshot]:
        assert self.node_ledgers is not None
        try:
            return self.node_ledgers()
        except Exception:  # noqa: BLE001 - a cluster that stops answering shows no nodes, it does not end polling
            log.warning("the cluster's node ledgers could not be read", exc_info=True)
            return {}

    @Slot(object)
    def _store(self, snapshot: LedgerSnapshot | None) -> None:
        self.snapshot, self.polled = snapshot, True
        self.snapshot_changed.emit(snapshot)

    @Slot(object)
    def _store_nodes(self, nodes: dict[str, LedgerSnapshot]) -> None:
        self.nodes = nodes
        self.nodes_changed.emit(nodes)


def _table(headers: list[str], stretch: int) -> QTableWidget:
    """Columns fit their contents except ``stretch``, which takes what is left (eliding its text)."""
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.setWordWrap(False)
    table.setMinimumHeight(70)
    return table


def _fill(table: QTableWidget, rows: list[list[str]], tooltips: list[str] | None = None) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            if tooltips:
                item.setToolTip(tooltips[r])
            table.setItem(r, c, item)


def _keep_free_box() -> QDoubleSpinBox:
    """GiB of GPU memory Hearth never leases, for games, video calls and the desktop."""
    box = QDoubleSpinBox()
    box.setRange(0.25, 64.0)
    box.setSingleStep(0.25)
    box.setDecimals(2)
    box.setSuffix(" GiB")
    box.setToolTip(
        "GPU memory Hearth leaves alone, on top of what other programs already use. Raise it before "
        "starting a game or a video call; background renders shrink or pause to make room."
    )
    try:
        saved = load_user_config().headroom
    except ConfigError:
        saved = None
    box.setValue((saved if saved is not None else DEFAULT_HEADROOM) / GiB)
    return box


def lease_state(lease) -> str:
    if lease.revoking:
        return "giving memory back"
    if lease.idle:
        return "idle (warm)"
    return "paused for a stronger job" if lease.throttled else "active"


def short_owner(owner: str) -> str:
    """``video-worker`` -> ``video``: the dock is narrow, and the app is what a person knows."""
    for suffix in ("-worker", " worker"):
        if owner.endswith(suffix):
            return owner.removesuffix(suffix)
    return owner


class MemoryPanel(QWidget):
    """Binds to a ``MemoryState``; polls only while visible."""

    def __init__(self, state: MemoryState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.status = QLabel("Reading the arbiter's ledger…")
        self.status.setWordWrap(True)
        self.usage = QProgressBar()
        self.figures = {
            name: QLabel("–") for name in ("device", "total", "headroom", "outside", "budget", "free")
        }
        for label in self.figures.values():
            label.setTextFormat(Qt.TextFormat.PlainText)
        self.keep_free = _keep_free_box()
        self.keep_free.editingFinished.connect(self._save_keep_free)
        self.leases = _table(["App", "Memory", "Tier, state"], stretch=2)
        self.waiting = _table(["App", "Job", "Priority", "Why it waits"], stretch=3)
        self.timeline = MemoryTimeline()
        self.nodes_title = QLabel("<b>Cluster nodes</b>")
        self.nodes = _table(["Node", "Device", "Leased of budget", "Free", "Jobs"], stretch=0)
        self._lay_out()
        self.show_nodes({})
        state.snapshot_changed.connect(self.show_snapshot)
        state.nodes_changed.connect(self.show_nodes)

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        labels = ("Device", "Total", "Headroom", "Used outside Hearth", "Budget", "Free to lease")
        for label, widget in zip(labels, self.figures.values(), strict=True):
            form.addRow(label, widget)
        form.addRow("Keep free for others", self.keep_free)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.status)
        layout.addLayout(form)
        layout.addWidget(self.usage)
        layout.addWidget(self.timeline)
        layout.addWidget(QLabel("<b>Leases</b>"))
        layout.addWidget(self.leases, 2)
        layout.addWidget(QLabel("<b>Waiting for memory</b>"))
        layout.addWidget(self.waiting, 1)
        layout.addWidget(self.nodes_title)
        layout.addWidget(self.nodes, 1)

    @Slot()
    def _save_keep_free(self) -> None:
        """The person's choice goes to ``arbiter.json``; the running arbiter applies it at once."""
        headroom = round(self.keep_free.value() * GiB)
        try:
            if load_user_config().headroom == headroom:
                return
            save_user_config(ArbiterUserConfig(headroom=headroom))
        except (ConfigError, OSError) as exc:
            self.status.setText(f"Could not save how much memory to keep free: {exc}")
            return
        self.status.setText(f"Keeping {format_bytes(headroom)} free for other programs from now on.")

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override: the dock's first width
        return QSize(380, 420)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.state.start()
        super().showEvent(event)

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.state.stop()
        super().hideEvent(event)

    @Slot(object)
    def show_snapshot(self, snapshot: LedgerSnapshot | None) -> None:
        running = snapshot is not None
        for widget in (self.usage, self.leases, self.waiting):
            widget.setEnabled(running)
        if not running:
            self.status.setText(NOT_RUNNING)
            self.usage.setValue(0)
            self.usage.setFormat("nothing leased")
            _fill(self.leases, [])
            _fill(self.waiting, [])
            for label in self.figures.values():
                label.setText("–")
            return
        self._show_figures(snapshot)
        self._show_tables(snapshot)
        self.timeline.add_snapshot(snapshot)

    @Slot(object)
    def show_nodes(self, nodes: dict[str, LedgerSnapshot]) -> None:
        """Each cluster node's own arbiter, a row per node; hidden off a cluster."""
        rows = []
        for name, s in sorted(nodes.items()):
            leased = sum(lease.bytes for lease in s.leases)
            rows.append(
                [
                    name,
                    s.device or "unknown",
                    f"{format_bytes(leased)} of {format_bytes(s.budget)}",
                    format_bytes(max(0, s.budget - leased - s.returning)),
                    f"{len(s.leases)} leased, {len(s.waiting)} waiting",
                ]
            )
        _fill(self.nodes, rows)
        for widget in (self.nodes_title, self.nodes):
            widget.setVisible(bool(rows))

    def _show_figures(self, s: LedgerSnapshot) -> None:
        leased = sum(lease.bytes for lease in s.leases)
        free = max(0, s.budget - leased - s.returning)
        returning = f" ({format_bytes(s.returning)} returning)" if s.returning else ""
        values = (
            s.device or "unknown",
            format_bytes(s.total),
            format_bytes(s.headroom),
            format_bytes(s.used_outside),
            format_bytes(s.budget),
            format_bytes(free) + returning,
        )
        for label, value in zip(self.figures.values(), values, strict=True):
            label.setText(value)
        self.usage.setRange(0, 1000)
        self.usage.setValue(min(1000, round(1000 * leased / s.budget)) if s.budget > 0 else 0)
        self.usage.setFormat(f"{format_bytes(leased)} of {format_bytes(s.budget)} leased")
        count = len(s.leases)
        self.status.setText(
            f"{count} lease{'s' if count != 1 else ''}, {format_bytes(leased)} leased; "
            f"{len(s.waiting)} waiting"
        )

    def _show_tables(self, s: LedgerSnapshot) -> None:
        _fill(
            self.leases,
            [
                [short_owner(lease.owner), format_bytes(lease.bytes), f"{lease.tier}, {lease_state(lease)}"]
                for lease in s.leases
            ],
            [
                f"{lease.job} ({lease.owner}): {lease.tier}, {lease_state(lease)}; "
                f"lease {lease.lease_id}, pid {lease.pid}, priority {lease.priority}"
                for lease in s.leases
            ],
        )
        _fill(
            self.waiting,
            [[short_owner(w.owner), w.job, str(w.priority), w.reason or "queued"] for w in s.waiting],
            [w.reason or "queued" for w in s.waiting],
        )
