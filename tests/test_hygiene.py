"""The hygiene checks themselves: each kind of leftover is named, and cleaning it up clears it."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

from tests.hygiene import leftovers, snapshot


def _left(before) -> list[str]:
    return leftovers(before, test_root="/nonexistent", settle=0.2)


def test_a_thread_still_running_is_named_and_a_finishing_one_is_awaited():
    before = snapshot()
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, name="stuck-thread")
    stuck.start()
    finishing = threading.Thread(target=lambda: None, name="finishing-thread")
    finishing.start()
    try:
        (found,) = _left(before)
        assert "stuck-thread" in found
    finally:
        release.set()
        stuck.join()
    assert _left(before) == []


def test_a_child_process_still_running_is_named():
    before = snapshot()
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (found,) = _left(before)
        assert f"child process {child.pid}" in found
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    assert _left(before) == []


def test_an_open_socket_is_named():
    before = snapshot()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        (found,) = _left(before)
        assert "inet socket" in found and "LISTEN" in found
    finally:
        listener.close()
    assert _left(before) == []


def test_an_active_qtimer_is_named_and_stopped(qtbot):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QWidget

    widget = QWidget()
    qtbot.addWidget(widget)
    before = snapshot()
    timer = QTimer(widget, interval=1000)
    timer.start()
    (found,) = _left(before)
    assert "QTimer (interval 1000 ms) owned by QWidget" in found
    assert not timer.isActive()
    assert _left(before) == []
