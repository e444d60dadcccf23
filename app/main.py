"""``hearth`` (or ``python -m app``): the window opens first, the worker processes start behind it.

The GUI process never imports torch, diffusers or transformers; the workers do, in their own
processes, which take several seconds to start. So the window is shown at once and the
supervisor is started from the event loop right after. Qt itself is imported only in ``main``, so
``hearth --help`` can list the window's options without it.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import signal
import sys

from workers.protocol import WorkerKind

log = logging.getLogger(__name__)

DEFAULT_SCREENSHOT_DELAY_MS = 2000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearth", description="Hearth: local generative AI on one GPU.")
    add_window_options(parser)
    return parser


def add_window_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        default=",".join(k.value for k in WorkerKind),
        help="worker kinds to start, comma separated (default: all)",
    )
    parser.add_argument("--tab", default="", help="open on this tab: chat, image, video or music")
    parser.add_argument(
        "--screenshot",
        default="",
        metavar="PATH",
        help="save a picture of the window to PATH after --screenshot-delay ms, then quit",
    )
    parser.add_argument("--screenshot-delay", type=int, default=DEFAULT_SCREENSHOT_DELAY_MS, metavar="MS")


def worker_kinds(spec: str) -> list[WorkerKind]:
    """The requested kinds whose job module exists in this build (a missing one would crash-loop)."""
    try:
        wanted = [WorkerKind(part.strip()) for part in spec.split(",") if part.strip()]
    except ValueError as exc:
        raise SystemExit(
            f"hearth: {exc}; worker kinds are {', '.join(k.value for k in WorkerKind)}"
        ) from None
    return [kind for kind in wanted if importlib.util.find_spec(f"workers.jobs.{kind.value}") is not None]


def main(argv: list[str] | None = None) -> int:
    args, qt_args = build_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.bridge import Bridge
    from app.main_window import MainWindow
    from app.settings import load_settings
    from app.style import app_icon
    from workers.logs import setup_logging
    from workers.supervisor import Supervisor

    setup_logging("gui")
    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    app.setApplicationName("Hearth")
    app.setWindowIcon(app_icon())
    transport = cluster_transport(load_settings().cluster_address)
    supervisor = Supervisor(kinds=worker_kinds(args.workers), transport=transport)  # no process starts here
    bridge = Bridge(supervisor)
    window = MainWindow(bridge)
    _select_tab(window, args.tab)
    window.show()
    QTimer.singleShot(0, supervisor.start)  # after the first paint: the window never waits on workers
    if not window.settings.welcome_shown and not args.screenshot:
        QTimer.singleShot(300, window.show_welcome)  # first run only; non-modal, nothing waits on it
    if args.screenshot:
        QTimer.singleShot(args.screenshot_delay, lambda: _screenshot_and_quit(window, args.screenshot))
    _close_on_ctrl_c(window)
    try:
        return app.exec()
    finally:
        supervisor.shutdown()  # on quit every worker ends: none is left holding VRAM


def cluster_transport(address: str):
    """Settings → Cluster…: the Ray transport to that cluster, or None (this machine's workers)
    when none is set or it cannot be reached (said on stderr and in the log, never fatal)."""
    if not address:
        return None
    try:
        from workers.cluster.control import ClusterError, connect
    except ImportError:
        log.warning("the cluster extra is not installed (make setup-cluster): running on this machine")
        return None
    try:
        return connect(address)
    except ClusterError as exc:
        print(f"hearth: {exc}; running on this machine", file=sys.stderr)
        log.warning("%s; running on this machine", exc)
        return None


def _select_tab(window, name: str) -> None:
    if not name:
        return
    titles = [title.lower() for title in window.tab_titles()]
    if name.lower() not in titles:
        raise SystemExit(f"hearth: no tab {name!r}; tabs are {', '.join(titles)}")
    window.tabs.setCurrentIndex(titles.index(name.lower()))


def _screenshot_and_quit(window, path: str) -> None:
    from PySide6.QtWidgets import QApplication

    if not window.grab().save(path):
        print(f"hearth: could not save the screenshot to {path}", file=sys.stderr)
    window.close()
    QApplication.quit()


def _close_on_ctrl_c(window) -> None:
    """Ctrl+C in the terminal, the terminal closing (SIGHUP) or SIGTERM close the window (saving
    settings, then stopping the workers, which ignore the terminal's signals themselves). Python
    only sees a signal while it runs, so a timer wakes it up."""
    from PySide6.QtCore import QTimer

    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, lambda *_: window.close())
    timer = QTimer(window)
    timer.timeout.connect(lambda: None)
    timer.start(250)
