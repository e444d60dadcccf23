"""Hearth's main window: Chat, Image, Video and Music tabs, Jobs and Memory docks, worker states."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.api_panel import ApiDialog, ApiIndicator, LocalApi
from app.brush_editor import BrushEditor
from app.chat_tab import ChatTab
from app.form_binding import form_values, restore_form
from app.gallery_tab import GalleryTab
from app.image_tab import ImageTab
from app.jobs_panel import DOCK_WIDTH, JobsPanel
from app.jobs_state import JobsState
from app.memory_panel import MemoryPanel, MemoryState
from app.models_tab import ModelsTab
from app.models_wiring import attach
from app.music_tab import MusicTab
from app.recall import Recall, TextBoxDrops, dropped_file
from app.settings import Settings, load_settings, save_settings
from app.style import NOTICE_STYLE, app_icon, coloured
from app.video_tab import VideoTab
from models.catalog import HOW_TO_ADD_MODELS
from workers.protocol import JOB_END_EVENTS, Queued, Started, WorkerKind, WorkerState

DEMO_NOTICE = (
    "Demo models: image, video and music run tiny random-weight models, so what they make is noise; "
    "add a real model: " + HOW_TO_ADD_MODELS.removeprefix("Add a real model by typing, ")
)
DEFAULT_SIZE = (1600, 960)
JOB_EVENTS = (Queued, Started, *JOB_END_EVENTS)


class WorkerStatusView(QWidget):
    """``chat ● ready   image ● starting ...`` in the status bar, one label per worker kind."""

    def __init__(self, bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.states: dict[WorkerKind, WorkerState] = {}
        self.labels: dict[WorkerKind, QLabel] = {}
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(0, 0, 4, 0)
        self._row.setSpacing(12)
        bridge.event.connect(self.on_event)
        bridge.workers_changed.connect(self.refresh)
        self.refresh()

    def text(self, kind: WorkerKind) -> str:
        label = self.labels.get(WorkerKind(kind))
        return label.text() if label is not None else ""

    @Slot()
    def refresh(self) -> None:
        for kind, state in self.bridge.worker_states().items():
            known = self.states.get(kind)
            detail = known.detail if known is not None and known.status is state.status else state.detail
            self._show(WorkerState(kind=kind, status=state.status, pid=state.pid, detail=detail))

    @Slot(object)
    def on_event(self, event: object) -> None:
        if isinstance(event, WorkerState):
            self._show(event)
        elif isinstance(event, JOB_EVENTS):
            self.refresh()  # the supervisor flips ready <-> busy around jobs without a WorkerState

    def _show(self, state: WorkerState) -> None:
        self.states[state.kind] = state
        label = self.labels.get(state.kind)
        if label is None:
            label = self.labels[state.kind] = QLabel()
            self._row.insertWidget(self._insert_index(state.kind), label)
        status = state.status.value
        label.setText(f"{state.kind.value} {coloured('●', status)} {status}")
        tip = f"{state.kind.value} worker: {status}" + (f" (pid {state.pid})" if state.pid else "")
        label.setToolTip(tip + (f"\n{state.detail}" if state.detail else ""))

    def _insert_index(self, kind: WorkerKind) -> int:
        order = list(WorkerKind)
        return sum(1 for k in self.labels if k is not kind and order.index(k) < order.index(kind))


class DemoNotice(QFrame):
    """A dismissible banner saying which models are demos and how to add a real one."""

    def __init__(self, on_dismiss=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("notice")
        self.setStyleSheet(NOTICE_STYLE)
        self.label = QLabel(DEMO_NOTICE)
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Hide this notice")
        close.clicked.connect(self.hide)
        if on_dismiss is not None:
            close.clicked.connect(on_dismiss)
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 6, 6, 6)
        row.addWidget(self.label, 1)
        row.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)


class MainWindow(QMainWindow):
    """Built around a bridge (real or fake); every tab is constructed as ``SomeTab(bridge)``."""

    def __init__(self, bridge, settings: Settings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.settings = settings if settings is not None else load_settings()
        self.setWindowTitle("Hearth")
        self.setWindowIcon(app_icon())
        self._default_size()
        self.local_api = LocalApi(getattr(bridge, "supervisor", None), self.settings, self)
        self.api_dialog: ApiDialog | None = None
        self._build_tabs()
        self._build_docks()
        self._build_status_bar()
        self._build_menus()
        self._restore_layout()
        self.local_api.state_changed.connect(self._on_api_state)
        # After the first paint, like the workers; never once the window is gone.
        QTimer.singleShot(0, self.local_api, self.local_api.start_if_enabled)

    # ------------------------------------------------------------------ construction

    def _build_tabs(self) -> None:
        self.image_tab = ImageTab(self.bridge, settings=self.settings)
        self.image_tabs = QTabWidget()
        self.image_tabs.setDocumentMode(True)
        self.image_tabs.addTab(self.image_tab, "Text to image")
        self.brush_editor = BrushEditor(self.bridge)
        self.image_tabs.addTab(self.brush_editor, "Brushes")
        self.chat_tab, self.video_tab, self.music_tab = (
            ChatTab(self.bridge),
            VideoTab(self.bridge),
            MusicTab(self.bridge),
        )
        self.tabs = QTabWidget()
        self.tabs.addTab(self.chat_tab, "Chat")
        self.tabs.addTab(self.image_tabs, "Image")
        self.tabs.addTab(self.video_tab, "Video")
        self.tabs.addTab(self.music_tab, "Music")
        self.models_tab = ModelsTab(self.bridge)
        self.tabs.addTab(self.models_tab, "Models")
        self._build_gallery()
        for name, form in self.remembered_forms().items():
            restore_form(form.form_fields(), self.settings.forms.get(name))
        self.notice = DemoNotice(on_dismiss=self._dismiss_notice)
        self.notice.setVisible(not self.settings.demo_notice_dismissed)
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.notice)
        column.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

    def _build_gallery(self) -> None:
        """The Gallery tab, and files dropped anywhere on the window: settings back into their tab."""
        self.recall = Recall(self)
        self.gallery = GalleryTab(self.bridge)
        self.gallery.use_settings_requested.connect(self.recall.use_settings)
        self.gallery.edit_requested.connect(
            lambda entry: self.recall.edit_with_brushes(entry.path, entry.info)
        )
        self.tabs.addTab(self.gallery, "Gallery")
        self.setAcceptDrops(True)
        self.text_box_drops = TextBoxDrops(self.tabs, self.recall.restore_file)  # every tab's text boxes

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if dropped_file(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        picked = dropped_file(event)
        if picked is not None:
            event.acceptProposedAction()
            self.recall.restore_file(picked)

    def _build_docks(self) -> None:
        self.jobs_state = JobsState(self.bridge, self)
        self.jobs_state.load_history()
        self.jobs_panel = JobsPanel(self.jobs_state)
        # On a cluster the supervisor also reads every node's arbiter (this machine's stays above).
        node_ledgers = getattr(getattr(self.bridge, "supervisor", None), "node_ledgers", None)
        self.memory_state = MemoryState(
            interval_s=self.settings.memory_refresh_s, parent=self, node_ledgers=node_ledgers
        )
        self.memory_panel = MemoryPanel(self.memory_state)
        self.jobs_dock = self._dock("Jobs", self.jobs_panel)
        self.memory_dock = self._dock("Memory", self.memory_panel)
        self.splitDockWidget(self.jobs_dock, self.memory_dock, Qt.Orientation.Vertical)
        attach(self.models_tab, self)  # the live budget, the tabs' pickers, "Use in its tab"

    def _default_size(self) -> None:
        screen = self.screen().availableGeometry() if self.screen() else None
        width, height = DEFAULT_SIZE
        if screen is not None:
            width, height = min(width, screen.width()), min(height, screen.height())
        self.resize(width, height)

    def _size_docks(self) -> None:
        """First-run dock sizes; Qt only honours them once the window has its real size."""
        docks = [self.jobs_dock, self.memory_dock]
        self.resizeDocks([self.jobs_dock], [DOCK_WIDTH], Qt.Orientation.Horizontal)
        self.resizeDocks(docks, [self.height() * 9 // 20, self.height() * 11 // 20], Qt.Orientation.Vertical)

    def _dock(self, title: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        widget.setMinimumWidth(260)
        dock.setObjectName(f"{title.lower()}_dock")  # saveState needs stable names
        dock.setWidget(widget)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        return dock

    def _build_status_bar(self) -> None:
        self.worker_status = WorkerStatusView(self.bridge)
        self.api_indicator = ApiIndicator(self.local_api)
        self.statusBar().addPermanentWidget(self.api_indicator)
        self.statusBar().addPermanentWidget(self.worker_status)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        outputs = QAction("Open outputs folder", self, triggered=self._open_outputs)
        quit_action = QAction("&Quit", self, triggered=self.close)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        file_menu.addActions([outputs, quit_action])
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addActions([self.jobs_dock.toggleViewAction(), self.memory_dock.toggleViewAction()])
        settings_menu = self.menuBar().addMenu("&Settings")
        self.local_api_action = QAction("Local API…", self, triggered=self.show_local_api)
        settings_menu.addAction(self.local_api_action)
        settings_menu.addAction(QAction("Cluster…", self, triggered=self.ask_cluster_address))
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(QAction("Adding a real model…", self, triggered=self._how_to_add_models))
        help_menu.addAction(QAction("Welcome…", self, triggered=self.show_welcome))
        help_menu.addAction(QAction("Report a problem…", self, triggered=self._report_problem))

    def _restore_layout(self) -> None:
        if self.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode()))
        restored = bool(self.settings.window_state) and self.restoreState(
            QByteArray.fromBase64(self.settings.window_state.encode())
        )
        self._docks_sized = restored

    # ------------------------------------------------------------------ actions

    def remembered_forms(self) -> dict:
        """Tabs whose form comes back as it was left (``Settings.forms``; the Image tab keeps its
        own typed fields in ``Settings``)."""
        return {
            "chat": self.chat_tab,
            "video": self.video_tab,
            "music": self.music_tab,
            "brushes": self.brush_editor,
        }

    def tab_titles(self) -> list[str]:
        return [self.tabs.tabText(i) for i in range(self.tabs.count())]

    def _dismiss_notice(self) -> None:
        self.settings.demo_notice_dismissed = True

    def _open_outputs(self) -> None:
        from workers.paths import outputs_dir

        QDesktopServices.openUrl(QUrl.fromLocalFile(str(outputs_dir())))

    def show_welcome(self) -> None:
        from app.welcome import WelcomeDialog

        self.settings.welcome_shown = True
        self.welcome = WelcomeDialog(parent=self)
        self.welcome.show()

    def show_local_api(self) -> ApiDialog:
        if self.api_dialog is None:
            self.api_dialog = ApiDialog(self.local_api, parent=self)
        self.api_dialog.show()
        self.api_dialog.raise_()
        return self.api_dialog

    def ask_cluster_address(self) -> None:
        """Settings → Cluster…: the Ray cluster the workers run on, from the next start (README)."""
        address, ok = QInputDialog.getText(
            self,
            "Cluster",
            "Run jobs on the Hearth cluster at HOST:PORT (empty: this machine only).\n"
            "Applies at the next start; needs the cluster extra (make setup-cluster).",
            text=self.settings.cluster_address,
        )
        if ok and address.strip() != self.settings.cluster_address:
            self.settings.cluster_address = address.strip()
            save_settings(self.settings)
            where = self.settings.cluster_address or "this machine"
            self.statusBar().showMessage(f"Jobs run on {where} from the next start")

    def _on_api_state(self) -> None:
        """A start that failed with nobody looking at the dialog (the window starting) is told here."""
        dialog = self.api_dialog
        if self.local_api.error and (dialog is None or not dialog.isVisible()):
            self.statusBar().showMessage(f"Local API not serving: {self.local_api.error}")

    def _report_problem(self) -> None:
        from app.report_dialog import ReportDialog

        ReportDialog(self).exec()

    def _how_to_add_models(self) -> None:
        QMessageBox.information(self, "Adding a real model", HOW_TO_ADD_MODELS)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._docks_sized:
            self._docks_sized = True
            QTimer.singleShot(0, self._size_docks)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.local_api.shutdown()  # API clients see the port close before the workers go
        self.gallery.shutdown()
        self.memory_state.stop(wait_s=3.0)
        self.models_tab.shutdown()
        self.jobs_panel.shutdown()
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64()).decode()
        self.settings.window_state = bytes(self.saveState().toBase64()).decode()
        self.image_tab.store_settings(self.settings)
        for name, form in self.remembered_forms().items():
            self.settings.forms[name] = form_values(form.form_fields())
        try:
            save_settings(self.settings)
        except OSError as exc:
            self.statusBar().showMessage(f"Settings not saved: {exc}")
        super().closeEvent(event)
