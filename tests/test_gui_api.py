"""Settings → Local API: the switch serves the OpenAI-compatible API on the window's own supervisor,
shows the address and key to copy, says why when it cannot listen, and stops with the window."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx2 as httpx
import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QLineEdit

from app.api.keys import api_key
from app.api.serve import DEFAULT_HOST, DEFAULT_PORT, exposure_warning
from app.api_panel import NO_SUPERVISOR, ApiDialog, ApiStatus, LocalApi
from app.bridge import Bridge
from app.fake_bridge import FakeBridge
from app.main_window import MainWindow
from app.settings import SETTINGS_VERSION, Settings, load_settings, save_settings, settings_path
from workers.protocol import Priority
from workers.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[1]
START_MS = 30_000  # importing uvicorn and binding on a loaded machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def refused(port: int) -> bool:
    with socket.socket() as client:
        return client.connect_ex(("127.0.0.1", port)) != 0


def api_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("hearth-api")]


@pytest.fixture
def bridge():
    supervisor = Supervisor(kinds=[], restore_queue=False)
    supervisor.start()
    yield Bridge(supervisor)
    supervisor.shutdown()


@pytest.fixture
def api(bridge):
    local_api = LocalApi(bridge.supervisor, Settings(api_port=free_port()))
    yield local_api
    local_api.shutdown()
    assert not api_threads(), "the API left a thread running"


@pytest.fixture
def dialog(qtbot, api):
    widget = ApiDialog(api)
    qtbot.addWidget(widget)
    widget.show()
    return widget


def settle(qtbot, api: LocalApi) -> None:
    qtbot.waitUntil(lambda: api.status in (ApiStatus.on, ApiStatus.off), timeout=START_MS)


def switch(qtbot, dialog: ApiDialog) -> None:
    dialog.switch.click()
    settle(qtbot, dialog.api)


def test_the_switch_serves_the_models_to_a_client_with_the_key(qtbot, dialog, api):
    port = api.settings.api_port
    switch(qtbot, dialog)
    assert api.status is ApiStatus.on, api.error
    assert dialog.switch.isChecked() and not dialog.error.isVisible()
    assert dialog.address.text() == f"http://127.0.0.1:{port}/v1"
    assert dialog.key.text() == api_key() == api.server.key
    headers = {"Authorization": f"Bearer {dialog.key.text()}"}
    answer = httpx.get(dialog.address.text() + "/models", headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.json()["object"] == "list" and answer.json()["data"]
    assert httpx.get(dialog.address.text() + "/models", timeout=10).status_code == 401
    assert not dialog.host.isEnabled() and not dialog.port.isEnabled(), "options change only when off"
    assert api.server.hub.priority is None
    saved = load_settings()
    assert saved.api_enabled and saved.api_port == port


def test_the_key_is_masked_until_shown_and_both_lines_copy(qtbot, dialog):
    assert dialog.key.echoMode() is QLineEdit.EchoMode.Password
    dialog.show_key.click()
    assert dialog.key.echoMode() is QLineEdit.EchoMode.Normal and dialog.show_key.text() == "Hide"
    dialog.copy_key.click()
    assert QGuiApplication.clipboard().text() == api_key()
    dialog.copy_address.click()
    assert QGuiApplication.clipboard().text() == dialog.address.text()


def test_turning_it_off_closes_the_port(qtbot, dialog, api):
    port = api.settings.api_port
    switch(qtbot, dialog)
    assert not refused(port)
    switch(qtbot, dialog)
    assert api.status is ApiStatus.off and not dialog.switch.isChecked()
    assert refused(port)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10)
    assert not load_settings().api_enabled
    assert dialog.host.isEnabled() and dialog.port.isEnabled()


def test_a_port_in_use_says_so_and_the_switch_goes_back_off(qtbot, dialog, api):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        api.settings.api_port = port
        switch(qtbot, dialog)
    assert api.status is ApiStatus.off and api.server is None
    assert not dialog.switch.isChecked() and dialog.switch.isEnabled()
    assert dialog.error.isVisible()
    assert f"port {port} on 127.0.0.1 is already in use" in dialog.error.text()
    assert not load_settings().api_enabled


def test_a_network_host_shows_the_exposure_warning(qtbot, dialog):
    assert not dialog.warning.isVisible()
    dialog.host.clear()
    qtbot.keyClicks(dialog.host, "0.0.0.0")
    assert dialog.warning.isVisible() and dialog.warning.text() == exposure_warning("0.0.0.0")
    assert "other machines on the network" in dialog.warning.text()
    assert dialog.api.settings.api_host == "0.0.0.0"
    assert dialog.address.text().startswith("http://127.0.0.1:")  # what a client here types
    dialog.host.clear()
    qtbot.keyClicks(dialog.host, "127.0.0.1")
    assert not dialog.warning.isVisible()


def test_an_empty_host_is_refused_with_a_message(qtbot, dialog, api):
    dialog.host.clear()
    qtbot.keyClicks(dialog.host, " ")
    dialog.switch.click()
    assert api.status is ApiStatus.off and not dialog.switch.isChecked()
    assert "Type the address to listen on" in dialog.error.text()


def test_background_priority_applies_to_the_api_jobs(qtbot, dialog, api):
    dialog.yield_box.click()
    assert api.settings.api_yield_to_window
    switch(qtbot, dialog)
    assert api.status is ApiStatus.on, api.error
    assert api.server.hub.priority is Priority.background


def test_without_a_supervisor_the_dialog_says_why_it_cannot_serve(qtbot):
    api = LocalApi(None, Settings())
    dialog = ApiDialog(api)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.unavailable.isVisible() and dialog.unavailable.text() == NO_SUPERVISOR
    assert not dialog.switch.isEnabled() and not dialog.host.isEnabled()
    api.turn_on()
    assert api.status is ApiStatus.off and api.server is None and not api_threads()


def test_the_window_serves_when_left_on_and_stops_on_close(qtbot, bridge):
    port = free_port()
    window = MainWindow(bridge, settings=Settings(api_enabled=True, api_port=port))
    qtbot.addWidget(window)
    window.show()
    try:
        qtbot.waitUntil(lambda: window.local_api.status is ApiStatus.on, timeout=START_MS)
        assert window.api_indicator.isVisible() and "on" in window.api_indicator.text()
        titles = [action.text() for action in window.menuBar().actions()]
        assert "&Settings" in titles and window.local_api_action.text() == "Local API…"
        window.local_api_action.trigger()
        assert window.api_dialog.isVisible() and window.api_dialog.switch.isChecked()
        assert window.api_dialog.address.text() == f"http://127.0.0.1:{port}/v1"
        window.close()
        assert refused(port) and not api_threads()
        assert load_settings().api_enabled, "closing the window keeps the API on for next time"
    finally:
        window.memory_state.stop(wait_s=5)


def test_a_failed_start_with_the_window_is_told_in_the_status_bar(qtbot, bridge):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        window = MainWindow(bridge, settings=Settings(api_enabled=True, api_port=port))
        qtbot.addWidget(window)
        window.show()
        try:
            qtbot.waitUntil(lambda: bool(window.local_api.error), timeout=START_MS)
            assert "already in use" in window.statusBar().currentMessage()
            assert window.local_api.settings.api_enabled, "tried again at the next start"
            assert not window.api_indicator.isVisible()
        finally:
            window.close()
            window.memory_state.stop(wait_s=5)


def test_a_window_on_the_fake_bridge_has_the_menu_but_no_server(qtbot):
    window = MainWindow(FakeBridge(), settings=Settings(api_enabled=True))
    qtbot.addWidget(window)
    window.show()
    try:
        dialog = window.show_local_api()
        assert dialog.unavailable.isVisible() and window.local_api.status is ApiStatus.off
    finally:
        window.close()
        window.memory_state.stop(wait_s=5)


def test_the_api_settings_round_trip():
    settings = Settings(api_enabled=True, api_host="0.0.0.0", api_port=12345, api_yield_to_window=True)
    save_settings(settings)
    assert load_settings() == settings


def test_a_settings_file_from_before_the_api_loads_with_its_defaults():
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text(json.dumps({"version": SETTINGS_VERSION, "image_steps": 12}))
    settings = load_settings()
    assert settings.image_steps == 12
    assert not settings.api_enabled and not settings.api_yield_to_window
    assert (settings.api_host, settings.api_port) == (DEFAULT_HOST, DEFAULT_PORT)


def test_opening_the_window_does_not_import_the_server_libraries():
    code = (
        "import sys, app.main_window\n"
        "loaded = {m.split('.')[0] for m in sys.modules} & {'uvicorn', 'fastapi', 'starlette'}\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_changing_the_port_after_a_failure_clears_the_error(qtbot, dialog, api):
    dialog.host.clear()
    qtbot.keyClicks(dialog.host, " ")
    dialog.switch.click()
    assert dialog.error.isVisible()
    dialog.port.setValue(free_port())
    assert not dialog.error.isVisible() and not api.error
