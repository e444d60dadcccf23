"""Settings → Local API: the window's switch for the OpenAI-compatible API of ``app/api/``.

:class:`LocalApi` owns the running server. It serves on the window's own supervisor, so API jobs
share the window's queue, its workers and the arbiter, and show in the Jobs panel. uvicorn and
fastapi are imported only when the API is turned on, on a helper thread (importing them and
binding take about a second), so the window opens as fast as without it and never freezes.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.api.keys import api_key, key_path
from app.api.serve import exposure_warning
from app.settings import save_settings
from app.style import ERROR_STYLE, coloured

log = logging.getLogger(__name__)

PORT_RANGE = (1024, 65535)
"""What the dialog offers: ports below 1024 need root on most systems."""
WARNING_STYLE = "QLabel { color: #7c2d12; background: #ffedd5; border: 1px solid #fb923c; border-radius: 4px; padding: 6px; }"
NO_SUPERVISOR = (
    "The local API runs on the window's workers, and this window has none "
    "(it was opened without a supervisor), so it cannot be turned on here. "
    "`hearth serve` runs it without the window."
)
HOW_TO_USE = (
    "Point an OpenAI client at the address, with the key as its API key. Jobs it sends show in the "
    "Jobs panel, marked “from the API”."
)


class ApiStatus(enum.Enum):
    off = "off"
    starting = "starting"
    on = "on"
    stopping = "stopping"


def api_address(host: str, port: int) -> str:
    """The base URL a client on this machine uses (a wildcard host is reached through loopback)."""
    from app.api.serve import url_of

    return url_of(host, port) + "/v1"


def start_server(supervisor, host: str, port: int, yield_to_window: bool):
    """A listening ``ApiServer`` (this imports uvicorn and fastapi), or ``OSError`` saying why not."""
    from app.api.serve import ApiServer

    server = ApiServer(supervisor, host=host, port=port, yield_to_window=yield_to_window)
    try:
        server.start()
    except OSError as exc:
        raise OSError(exc.strerror or str(exc)) from None
    return server


class LocalApi(QObject):
    """The local API's on/off state for the window: settings in, a running server out.

    ``turn_on`` and ``turn_off`` return at once; the work happens on a helper thread and
    ``state_changed`` fires when ``status`` (and ``error``) change. ``shutdown`` (the window
    closing) stops the server synchronously and refuses any later start.
    """

    state_changed = Signal()
    _settled = Signal()

    def __init__(self, supervisor, settings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.supervisor = supervisor
        self.settings = settings
        self.status = ApiStatus.off
        self.error = ""
        self.server = None
        self._thread: threading.Thread | None = None
        self._outcomes: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._remember = False
        self._settled.connect(self._on_settled, Qt.ConnectionType.QueuedConnection)

    @property
    def available(self) -> bool:
        return self.supervisor is not None

    @property
    def address(self) -> str:
        if self.server is not None:
            return api_address(*self.server.bound)
        return api_address(self.settings.api_host.strip(), self.settings.api_port)

    def key(self) -> str:
        """The key clients send (made on first use, like ``hearth api-key``)."""
        return self.server.key if self.server is not None else api_key()

    def configure(self, host: str, port: int, yield_to_window: bool) -> None:
        """New listening options; they apply the next time the API is turned on."""
        self.settings.api_host = host.strip()
        self.settings.api_port = port
        self.settings.api_yield_to_window = yield_to_window
        self.error = ""  # it was about the options just changed
        self.state_changed.emit()

    def start_if_enabled(self) -> None:
        """At window start: serve when the user left the API on last time."""
        if self.settings.api_enabled and self.available:
            self._start(remember=False)

    def turn_on(self) -> None:
        self._start(remember=True)

    def turn_off(self) -> None:
        self.settings.api_enabled = False
        self.save()
        if self.status is not ApiStatus.on or self._closed:
            return
        server, self.server = self.server, None
        self._set(ApiStatus.stopping)
        self._in_background(lambda: server.stop())

    def save(self) -> None:
        try:
            save_settings(self.settings)
        except OSError as exc:
            self.error = f"Settings not saved: {exc}"
            self.state_changed.emit()

    def shutdown(self, timeout: float = 35.0) -> None:
        """Stop serving before the window goes: a start under way is waited for, then stopped."""
        self._closed = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._drain()
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.status = ApiStatus.off

    def _start(self, remember: bool) -> None:
        if self._closed or not self.available or self.status is not ApiStatus.off:
            return
        problem = self._check_options()
        if problem:
            self._fail(problem, remember)
            return
        if remember:
            self.settings.api_enabled = True
            self.save()
        self.error = ""
        self._remember = remember
        self._set(ApiStatus.starting)
        host, port = self.settings.api_host.strip(), self.settings.api_port
        supervisor, yield_to_window = self.supervisor, self.settings.api_yield_to_window
        self._in_background(lambda: start_server(supervisor, host, port, yield_to_window))

    def _check_options(self) -> str:
        if not self.settings.api_host.strip():
            return "Type the address to listen on: 127.0.0.1 keeps the API on this machine."
        if not 0 <= self.settings.api_port <= PORT_RANGE[1]:
            return f"The port must be between {PORT_RANGE[0]} and {PORT_RANGE[1]}."
        return ""

    def _in_background(self, work) -> None:
        def run() -> None:
            try:
                outcome = work()
            except Exception as exc:  # noqa: BLE001 - shown to the user in the dialog
                log.warning("local API: %s", exc)
                outcome = exc
            self._outcomes.put(outcome)
            self._settled.emit()

        self._thread = threading.Thread(target=run, name="hearth-api-switch", daemon=True)
        self._thread.start()

    @Slot()
    def _on_settled(self) -> None:
        if self._closed:
            return
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._drain()

    def _drain(self) -> None:
        while not self._outcomes.empty():
            outcome = self._outcomes.get_nowait()
            if isinstance(outcome, Exception):
                self._fail(str(outcome) or type(outcome).__name__, self._remember)
            elif outcome is not None:  # a listening server
                self.server = outcome
                log.info("local API listening on %s", self.address)
                self._set(ApiStatus.on)
            else:
                self._set(ApiStatus.off)

    def _fail(self, message: str, remember: bool) -> None:
        """The switch goes back off; a failure at window start keeps the setting (retried next time)."""
        self.error = message
        if remember:
            self.settings.api_enabled = False
            self.save()
        self._set(ApiStatus.off)

    def _set(self, status: ApiStatus) -> None:
        self.status = status
        if not self._closed:
            self.state_changed.emit()


class ApiIndicator(QLabel):
    """``API ● on`` in the status bar while the API serves, so it is never on unnoticed."""

    def __init__(self, api: LocalApi, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.api = api
        api.state_changed.connect(self.refresh)
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        status = self.api.status
        colour = {ApiStatus.on: "ready", ApiStatus.starting: "starting", ApiStatus.stopping: "starting"}
        self.setVisible(status is not ApiStatus.off)
        self.setText(f"API {coloured('●', colour.get(status, 'stopped'))} {status.value}")
        self.setToolTip(f"Local API: {status.value}, {self.api.address} (Settings → Local API…)")


class ApiDialog(QDialog):
    """Local API: off / on, host, port, priority; the address and key to copy into a client."""

    def __init__(self, api: LocalApi, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.api = api
        self.setWindowTitle("Local API")
        self.setMinimumWidth(560)
        self._build()
        api.state_changed.connect(self.refresh)
        self.refresh()

    def _build(self) -> None:
        settings = self.api.settings
        self.switch = QCheckBox("Serve an OpenAI-compatible API")
        self.switch.toggled.connect(self._on_switch)
        self.status = QLabel()
        self.host = QLineEdit(settings.api_host)
        self.host.setPlaceholderText("127.0.0.1")
        self.host.setToolTip("127.0.0.1: this machine only. 0.0.0.0: every network this machine is on.")
        self.port = QSpinBox()
        self.port.setRange(*PORT_RANGE)
        self.port.setValue(settings.api_port)
        self.yield_box = QCheckBox("API jobs wait for the window's work (background priority)")
        self.yield_box.setChecked(settings.api_yield_to_window)
        for signal in (self.host.textEdited, self.port.valueChanged, self.yield_box.toggled):
            signal.connect(self._on_options)
        self.address = _read_only()
        self.key = _read_only()
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setToolTip(f"Kept in {key_path()} (readable only by you)")
        self.show_key = QToolButton(text="Show", checkable=True)
        self.show_key.toggled.connect(self._on_show_key)
        self.copy_address = _copy_button("Copy the address", lambda: self.address.text())
        self.copy_key = _copy_button("Copy the key", lambda: self.key.text())
        self.warning = _message_label(WARNING_STYLE)
        self.error = _message_label(ERROR_STYLE)
        self.unavailable = _message_label(WARNING_STYLE, NO_SUPERVISOR)
        self._lay_out()

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow(_row(self.switch, self.status, stretch_first=False))
        form.addRow("Host", self.host)
        form.addRow("Port", _row(self.port, stretch_first=False))
        form.addRow(self.yield_box)
        form.addRow("Address", _row(self.address, self.copy_address))
        form.addRow("Key", _row(self.key, self.show_key, self.copy_key))
        hint = QLabel(HOW_TO_USE)
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #4b5563;")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        column = QVBoxLayout(self)
        column.addWidget(self.unavailable)
        column.addLayout(form)
        column.addWidget(hint)
        column.addWidget(self.warning)
        column.addWidget(self.error)
        column.addStretch(1)
        column.addWidget(buttons)

    @Slot()
    def refresh(self) -> None:
        api, status = self.api, self.api.status
        self.unavailable.setVisible(not api.available)
        self.switch.blockSignals(True)
        self.switch.setChecked(status in (ApiStatus.starting, ApiStatus.on))
        self.switch.blockSignals(False)
        self.switch.setEnabled(api.available and status in (ApiStatus.off, ApiStatus.on))
        editable = api.available and status is ApiStatus.off
        for widget in (self.host, self.port, self.yield_box):
            widget.setEnabled(editable)
            widget.setToolTip("" if editable else "Turn the API off to change this.")
        self.status.setText(_status_text(status))
        _show_start(self.address, api.address)
        self._show_key()
        warning = exposure_warning(api.settings.api_host.strip() or "127.0.0.1")
        self.warning.setText(warning)
        self.warning.setVisible(bool(warning))
        self.error.setText(api.error)
        self.error.setVisible(bool(api.error))

    def _show_key(self) -> None:
        try:
            _show_start(self.key, self.api.key())
        except OSError as exc:
            self.key.setText("")
            self.key.setPlaceholderText(f"The key cannot be read or made: {exc}")

    @Slot(bool)
    def _on_switch(self, on: bool) -> None:
        if on:
            self.api.turn_on()
        else:
            self.api.turn_off()
        self.refresh()  # a refused start (no host) puts the switch straight back

    @Slot()
    def _on_options(self) -> None:
        self.api.configure(self.host.text(), self.port.value(), self.yield_box.isChecked())

    @Slot(bool)
    def _on_show_key(self, shown: bool) -> None:
        self.key.setEchoMode(QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password)
        self.show_key.setText("Hide" if shown else "Show")

    def done(self, result: int) -> None:
        self.api.save()  # host, port and priority edits survive even if the window is killed
        super().done(result)


def _status_text(status: ApiStatus) -> str:
    return {
        ApiStatus.off: coloured("● off", "stopped"),
        ApiStatus.starting: coloured("● starting…", "starting"),
        ApiStatus.on: coloured("● on", "ready"),
        ApiStatus.stopping: coloured("● stopping…", "starting"),
    }[status]


def _copy_button(tip: str, text) -> QPushButton:
    button = QPushButton("Copy")
    button.setToolTip(tip)
    button.setAutoDefault(False)  # Enter closes the dialog, it does not copy
    button.clicked.connect(lambda: QGuiApplication.clipboard().setText(text()))
    return button


def _show_start(line: QLineEdit, text: str) -> None:
    if line.text() != text:
        line.setText(text)
        line.setCursorPosition(0)  # a long key shows its beginning, not its end


def _read_only() -> QLineEdit:
    line = QLineEdit()
    line.setReadOnly(True)
    return line


def _message_label(style: str, text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setStyleSheet(style)
    label.setVisible(bool(text))
    return label


def _row(*widgets: QWidget, stretch_first: bool = True) -> QWidget:
    holder = QWidget()
    row = QHBoxLayout(holder)
    row.setContentsMargins(0, 0, 0, 0)
    for index, widget in enumerate(widgets):
        row.addWidget(widget, 1 if index == 0 and stretch_first else 0)
    if not stretch_first:
        row.addStretch(1)
    return holder
