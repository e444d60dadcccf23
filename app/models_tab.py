"""The Models tab: every model Hearth knows of on this machine, what it is and whether it fits.

``ModelsState`` holds the registry's models and the budget their fit verdicts are judged
against: the arbiter's live budget (device total less headroom less memory used outside
Hearth, read from the Memory panel's ``MemoryState``) when it runs, else this machine's static
one; a change of budget re-judges every row. Scans run on a plain thread (they only read
headers: ``models.identify`` never imports torch). Downloads are ``app.model_downloads`` jobs,
shown in the Jobs panel. The tab never copies a model: "Use in its tab" sets that tab's model
field to the model's path (or hub id).
"""

from __future__ import annotations

import logging
import os
import threading

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.job import Job, bind_job
from app.model_choices import verdict_text
from app.model_downloads import DownloadJobs
from app.style import NOTICE_STYLE
from models.fit import Budget, judge, tier_fits
from models.registry import BUILTIN
from workers.arbiter.units import format_bytes
from workers.errors import BadInput, HearthError, MissingModel
from workers.protocol import JobState

log = logging.getLogger(__name__)
COLUMNS = ("Name", "Kind", "Family", "Params", "Quant", "Size", "Fit", "State", "Source", "Tiers", "Location")
NAME_WIDTH = 300
"""Pixels of the Name column (a hub repo's GGUF is named by its whole path): elided in the middle."""
STATE_WIDTH = 220
"""The State column: why a model can't run is elided here and whole in its tooltip."""
RUNS_IN = {"image": "Image", "chat": "Chat", "video": "Video", "music": "Music"}
"""The tab a model of each kind runs in."""
VERDICT_COLOURS = {"fits": "#166534", "fits_reduced": "#92400e", "cpu_only": "#9a3412", "wont_fit": "#b91c1c"}


class ModelsState(QObject):
    """The registry's models and the budget they are judged against.

    ``models_changed``: rows came, went or changed; ``budget_changed``: the verdicts must be
    read again; ``message_changed(text)``: what a scan, an add or a removal did;
    ``offline_changed(bool)``: the hub could not be reached."""

    models_changed = Signal()
    budget_changed = Signal()
    message_changed = Signal(str)
    offline_changed = Signal(bool)
    download_started = Signal(object)
    """(Job) a download began: the tab shows its progress."""
    _scanned = Signal(object)

    def __init__(self, bridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        from models.budget import machine_budget

        self.static_budget = machine_budget()
        self.budget = self.static_budget
        self.live = False
        """Whether ``budget`` is the running arbiter's."""
        self.models: list = []
        self.message = ""
        self.offline_forced = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in (
            "1",
            "true",
            "yes",
            "on",
        )
        self.offline = self.offline_forced
        self.scanning = False
        self._scan_thread: threading.Thread | None = None
        self.downloads = DownloadJobs(bridge, self)
        self._scanned.connect(self._on_scanned, Qt.ConnectionType.QueuedConnection)
        self.reload()

    # -- reading --------------------------------------------------------------------------

    def reload(self) -> None:
        """The built-in models first (a new user's table is never empty), then the linked ones."""
        from models.registry import ModelRegistry, builtin_models

        with ModelRegistry() as registry:
            self.models = builtin_models() + registry.models()
        self.models_changed.emit()

    def model(self, model_id: str):
        return next((m for m in self.models if m.id == model_id), None)

    @Slot(object)
    def follow_ledger(self, snapshot) -> None:
        """A Memory panel reading: the arbiter's budget when it runs, else this machine's."""
        if snapshot is not None and snapshot.total:
            budget, live = (
                Budget(device_bytes=max(0, snapshot.budget), host_bytes=self.static_budget.host_bytes),
                True,
            )
        else:
            budget, live = self.static_budget, False
        if (budget, live) != (self.budget, self.live):
            self.budget, self.live = budget, live
            self.budget_changed.emit()

    def budget_text(self) -> str:
        device = (
            f"{format_bytes(self.budget.device_bytes)} of device memory"
            if self.budget.device_bytes or self.live
            else "no GPU"
        )
        where = "the arbiter's live budget" if self.live else "this machine (the arbiter is not running)"
        return f"Fit against {device}, {format_bytes(self.budget.host_bytes)} of system memory: {where}"

    # -- writing --------------------------------------------------------------------------

    def scan(self, paths: list[str] | None = None) -> bool:
        """Scan ``paths`` (or the usual places) on a thread; False when a scan already runs."""
        if self.scanning:
            return False
        self.scanning = True
        self._say("Scanning " + (", ".join(paths) if paths else "this computer's model folders") + "…")
        self._scan_thread = threading.Thread(
            target=self._scan, args=(list(paths or []),), name="model scan", daemon=True
        )
        self._scan_thread.start()
        return True

    def wait_for_scan(self, timeout: float = 60.0) -> None:
        if self._scan_thread is not None:
            self._scan_thread.join(timeout)

    def _scan(self, paths: list[str]) -> None:
        from models.identity import FoundKind
        from models.registry import ModelRegistry
        from models.scan import Found, scan

        linked = skipped = unreadable = 0
        try:
            with ModelRegistry() as registry:
                for item in scan(paths):
                    if not isinstance(item, Found):
                        unreadable += 1
                    elif item.identity.kind is FoundKind.unknown:
                        skipped += 1
                    else:
                        registry.link(item.candidate, item.identity)
                        linked += 1
                if not paths:
                    registry.rescan()
            text = f"Linked {linked} model(s) in place; {skipped} skipped, {unreadable} unreadable."
        except (HearthError, OSError) as exc:
            text = f"Scan stopped: {exc}"
        self._scanned.emit(text)

    @Slot(object)
    def _on_scanned(self, text: str) -> None:
        self.scanning = False
        self.reload()
        self._say(text)

    def add(self, path: str) -> bool:
        from models.registry import ModelRegistry

        try:
            with ModelRegistry() as registry:
                model = registry.add(path)
        except (BadInput, MissingModel) as exc:
            self._say(str(exc))
            return False
        self.reload()
        self._say(
            f"Linked {model.name}: {model.identity.kind.value} {model.identity.family}, left where it is."
        )
        return True

    def freed_by_delete(self, model) -> int:
        from models.registry import ModelRegistry

        with ModelRegistry() as registry:
            return registry.freed_by_delete(model)

    def remove(self, model, *, delete_files: bool) -> None:
        """Unlink ``model``; ``delete_files`` (only for one Hearth downloaded) frees its disk."""
        from models.registry import ModelRegistry

        with ModelRegistry() as registry:
            if delete_files and model.downloaded:
                _gone, freed = registry.delete_files(model.id)
                text = f"Deleted {model.name}: freed {format_bytes(freed)}."
            else:
                registry.remove(model.id)
                text = f"Unlinked {model.name}; its files are left at {model.location}."
        self.reload()
        self._say(text)

    def download(self, hub_id: str, include: str = "") -> Job:
        job = bind_job(self.downloads.start(hub_id, include), ended=self._on_download_end)
        self.download_started.emit(job)
        return job

    def _on_download_end(self, job: Job) -> None:
        from models.hub_access import OFFLINE

        hub_id = job.request.hub_id
        if job.state is JobState.finished:
            self._set_offline(False)
            self.reload()
            names = ", ".join(m.name for m in self.models if m.location in job.outputs)
            self._say(f"Downloaded {names or hub_id}.")
        elif job.state is JobState.failed:
            self._set_offline(OFFLINE in job.error_message)
            self._say(f"Download of {hub_id} failed: {job.error_message}")
        else:
            self._say(f"Download of {hub_id} cancelled; starting it again resumes where it stopped.")

    def _set_offline(self, offline: bool) -> None:
        if offline != self.offline:
            self.offline = offline
            self.offline_changed.emit(offline)

    def _say(self, text: str) -> None:
        self.message = text
        self.message_changed.emit(text)


class ModelsTab(QWidget):
    """Binds to a ``ModelsState``. ``use_requested(kind, spec)``: run this model in its tab."""

    use_requested = Signal(str, str)

    def __init__(self, bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = ModelsState(bridge, self)
        self.download: Job | None = None
        """The download the tab shows: the last one started."""
        self._build()
        self.state.models_changed.connect(self.refresh)
        self.state.budget_changed.connect(self.refresh)
        self.state.message_changed.connect(self.status.setText)
        self.state.offline_changed.connect(self._show_offline)
        self.state.download_started.connect(self._follow_download)
        self.refresh()

    def _build(self) -> None:
        self.offline_notice = QLabel(self._offline_words())
        self.offline_notice.setObjectName("notice")
        self.offline_notice.setStyleSheet(NOTICE_STYLE)
        self.offline_notice.setWordWrap(True)
        self.offline_notice.setVisible(self.state.offline)
        self.buttons = {
            "scan": QPushButton(
                "Scan this computer",
                toolTip="The Hugging Face cache, ComfyUI, A1111/Forge, InvokeAI, LM Studio and Ollama folders",
            ),
            "scan_folder": QPushButton("Scan folder…", toolTip="Link every model in a folder, in place"),
            "add": QPushButton("Add…", toolTip="Link one model file in place (nothing is copied)"),
            "download": QPushButton("Download…", toolTip="Download a model from the Hugging Face hub"),
            "use": QPushButton("Use in its tab", toolTip="Set the model field of the tab this model runs in"),
            "remove": QPushButton("Remove…", toolTip="Unlink a model; delete one Hearth downloaded"),
        }
        self.buttons["scan"].clicked.connect(lambda: self.state.scan())
        self.buttons["scan_folder"].clicked.connect(lambda: self.scan_folder())
        self.buttons["add"].clicked.connect(lambda: self.add_file())
        self.buttons["download"].clicked.connect(lambda: self.start_download())
        self.buttons["use"].clicked.connect(self.use_selected)
        self.buttons["remove"].clicked.connect(lambda: self.remove_selected())
        row = QHBoxLayout()
        for key in ("scan", "scan_folder", "add", "download"):
            row.addWidget(self.buttons[key])
        row.addStretch(1)
        row.addWidget(self.buttons["use"])
        row.addWidget(self.buttons["remove"])
        self.download_label = QLabel()
        self.download_bar = QProgressBar()
        self.download_bar.setRange(0, 100)
        self.download_cancel = QPushButton("Cancel download")
        self.download_cancel.clicked.connect(self._cancel_download)
        download_row = QHBoxLayout()
        download_row.addWidget(self.download_label)
        download_row.addWidget(self.download_bar, 1)
        download_row.addWidget(self.download_cancel)
        self.download_box = QWidget()
        self.download_box.setLayout(download_row)
        self.download_box.setVisible(False)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.table.setColumnWidth(0, NAME_WIDTH)
        header.setSectionResizeMode(COLUMNS.index("State"), QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(COLUMNS.index("State"), STATE_WIDTH)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setWordWrap(False)
        self.table.itemSelectionChanged.connect(self._enable)
        self.table.itemDoubleClicked.connect(lambda _item: self.use_selected())
        self.budget_label = QLabel()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        column = QVBoxLayout(self)
        column.addWidget(self.offline_notice)
        column.addLayout(row)
        column.addWidget(self.download_box)
        column.addWidget(self.budget_label)
        column.addWidget(self.table, 1)
        column.addWidget(self.status)

    # -- view -----------------------------------------------------------------------------

    @Slot()
    def refresh(self) -> None:
        selected = self.selected()
        self.table.setRowCount(len(self.state.models))
        for row, model in enumerate(self.state.models):
            for column, (text, tip) in enumerate(self._cells(model)):
                item = QTableWidgetItem(text)
                item.setToolTip(tip or text)
                item.setData(Qt.ItemDataRole.UserRole, model.id)
                if COLUMNS[column] == "Fit":
                    fit = None if model.missing else judge(model.identity.tiers, self.state.budget)
                    if fit is not None:
                        item.setForeground(_colour(VERDICT_COLOURS[fit.verdict.value]))
                self.table.setItem(row, column, item)
            if selected is not None and model.id == selected.id:
                self.table.selectRow(row)
        self.budget_label.setText(self.state.budget_text())
        self._enable()

    def _cells(self, model) -> list[tuple[str, str]]:
        identity = model.identity
        state = (
            "missing: its file is gone" if model.missing else model.problem or (identity.reason or "ready")
        )
        return [
            (model.name, model.id),
            (identity.kind.value, ""),
            (identity.family or "-", ""),
            (
                _count(identity.parameters),
                f"{identity.parameters:,} parameters" if identity.parameters else "",
            ),
            (identity.dtype or "-", ""),
            (format_bytes(identity.file_bytes) if identity.file_bytes else "-", ""),
            (verdict_text(model, self.state.budget), ""),
            (state, ""),
            (model.source, ""),
            (self._tiers(model), ""),
            (model.location, model.path),
        ]

    def _tiers(self, model) -> str:
        parts = []
        for tier in model.identity.tiers:
            need = tier.host_bytes if tier.on_cpu else tier.device_bytes
            mark = "✓" if tier_fits(tier, self.state.budget) else "✗"
            parts.append(f"{tier.name} {format_bytes(need)} {mark}")
        return " · ".join(parts) or "-"

    def selected(self):
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return self.state.model(item.data(Qt.ItemDataRole.UserRole)) if item else None

    def select(self, model_id: str) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == model_id:
                self.table.selectRow(row)
                return

    def _enable(self) -> None:
        model = self.selected()
        runnable = (
            model is not None
            and model.identity.kind.value in RUNS_IN
            and model.identity.runnable
            and not model.problem
        )
        self.buttons["use"].setEnabled(runnable)
        self.buttons["use"].setText(
            f"Use in {RUNS_IN[model.identity.kind.value]} tab" if runnable else "Use in its tab"
        )
        self.buttons["remove"].setEnabled(model is not None and model.source != BUILTIN)
        self.buttons["remove"].setText("Delete…" if model is not None and model.downloaded else "Remove…")

    def _offline_words(self) -> str:
        from models.hub_access import OFFLINE

        why = " (HF_HUB_OFFLINE is set)" if self.state.offline_forced else ""
        return f"{OFFLINE[0].upper()}{OFFLINE[1:]}{why}. Downloads wait for the hub; every model below runs as before."

    @Slot(bool)
    def _show_offline(self, offline: bool) -> None:
        self.offline_notice.setText(self._offline_words())
        self.offline_notice.setVisible(offline)

    @Slot(object)
    def _follow_download(self, job: Job) -> None:
        self.download = job
        self.download_bar.setValue(0)
        self._show_download_words(job.message or "queued", job)
        self.download_box.setVisible(True)

        def progressed(step: int, _total: int, _message: str) -> None:
            if job is self.download:  # an earlier download still running keeps quiet
                self.download_bar.setValue(step)

        def ended(_job: Job) -> None:
            if job is self.download:
                self.download_box.setVisible(False)

        bind_job(
            job, status=lambda text: self._show_download_words(text, job), progressed=progressed, ended=ended
        )

    def _show_download_words(self, text: str, job: Job) -> None:
        if job is self.download:
            self.download_label.setText(f"Downloading {job.request.hub_id}: {text}")

    def _cancel_download(self) -> None:
        if self.download is not None:
            self.state.downloads.cancel(self.download.job_id)

    # -- actions --------------------------------------------------------------------------

    def scan_folder(self, path: str | None = None) -> bool:
        path = path or QFileDialog.getExistingDirectory(self, "Scan a folder of models")
        return bool(path) and self.state.scan([path])

    def add_file(self, path: str | None = None) -> bool:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self, "Link a model file", "", "Models (*.safetensors *.sft *.gguf);;All files (*)"
            )
        return bool(path) and self.state.add(path)

    def start_download(self, hub_id: str | None = None, include: str = "") -> Job | None:
        if hub_id is None:
            hub_id, ok = QInputDialog.getText(
                self, "Download a model", "Hugging Face hub id (org/name); a GGUF repo: org/name:*Q4_K_M*"
            )
            if not ok or not hub_id.strip():
                return None
            hub_id, _, include = hub_id.strip().partition(":")
        return self.state.download(hub_id, include)

    def use_selected(self) -> None:
        model = self.selected()
        if (
            model is not None
            and model.identity.kind.value in RUNS_IN
            and model.identity.runnable
            and not model.problem
        ):
            self.use_requested.emit(model.identity.kind.value, model.spec)

    def remove_selected(self) -> bool:
        model = self.selected()
        if model is None:
            return False
        if model.downloaded:
            size = format_bytes(self.state.freed_by_delete(model))
            question = f"Delete {model.name} from disk? This frees {size}. (Hearth downloaded it.)"
        else:
            question = f"Unlink {model.name}? Its files stay where they are: {model.location}"
        answer = QMessageBox.question(self, "Remove model", question)
        if answer != QMessageBox.StandardButton.Yes:
            return False
        self.state.remove(model, delete_files=model.downloaded)
        return True

    def shutdown(self) -> None:
        self.state.downloads.wait()
        self.state.wait_for_scan()


def _count(parameters: int) -> str:
    if not parameters:
        return "-"
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if parameters >= size:
            return f"{parameters / size:.{2 if parameters < 10 * size else 1}f}{unit}"
    return str(parameters)


def _colour(name: str):
    from PySide6.QtGui import QBrush, QColor

    return QBrush(QColor(name))
