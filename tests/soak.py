"""Keep the real window open and busy for a while, then check that nothing leaked.

The window, its supervisor and all four real worker processes run on the demo models while a
script drives every tab in turn: a chat answer, an image, a brush session with edits, a short
video, a music clip, each one seen through to its end, with tab switches and the Memory panel
ticking throughout. Every ``SAMPLE_S`` seconds it records the resident memory and open file
descriptors of the GUI process and of each worker. At the end the window must still be alive,
every job must have ended as expected, no Qt warning may name a leaked object, and after the
warm-up (model loads, first allocations) memory and descriptors must stay flat.

``make soak`` runs it for 30 minutes; ``tests/test_soak.py`` runs a minute of it in
``make test``. ``python -m tests.soak --minutes 30 --json out.json`` prints the report.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

SAMPLE_S = 5.0
STEP_TIMEOUT_S = 300.0
TICK_MS = 20
QT_LEAK_WORDS = ("leak", "destroyed while", "QObject::startTimer", "Timers cannot", "QThread: Destroyed")


class SoakFailed(Exception):
    """A job failed or a step never came: the soak stops and reports it."""


@dataclass(slots=True)
class Sample:
    t: float
    process: str
    pid: int
    rss_mb: float
    fds: int
    idle: bool = False
    """Taken between cycles, every job ended: a running export's pipes are not counted as a leak."""


@dataclass(slots=True)
class SoakReport:
    seconds: float
    cycles: int = 0
    jobs_ended: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    qt_warnings: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    warm_up_s: float = 0.0

    def trend(self, process: str) -> dict[str, float]:
        """RSS and fds at warm-up end and at the end, and the RSS slope after warm-up (MB/min).

        The slope is read between cycles, with every job done: a leak is what a process keeps
        once its work is over; a sample taken mid-render also holds that render's activations."""
        rows = [s for s in self.samples if s.process == process and s.t >= self.warm_up_s]
        idle = [s for s in rows if s.idle]
        if len(rows) < 2 or len(idle) < 2:
            return {}
        return {
            "rss_mb_after_warm_up": idle[0].rss_mb,
            "rss_mb_end": idle[-1].rss_mb,
            "rss_mb_max_busy": max(s.rss_mb for s in rows),
            "rss_slope_mb_per_min": _slope([s.t for s in idle], [s.rss_mb for s in idle]) * 60,
            # The least a cycle after warm-up added: above zero when the process grew at every one.
            "rss_mb_least_growth_per_cycle": min(b.rss_mb - a.rss_mb for a, b in itertools.pairwise(idle)),
            "fds_after_warm_up": idle[0].fds,
            "fds_end": idle[-1].fds,
            "fds_max": max(s.fds for s in idle),
            "fds_max_busy": max(s.fds for s in rows),
        }

    def at_minute(self, process: str, minute: float) -> dict[str, float]:
        rows = [s for s in self.samples if s.process == process and s.t <= minute * 60]
        return {"rss_mb": rows[-1].rss_mb, "fds": rows[-1].fds} if rows else {}

    def processes(self) -> list[str]:
        return sorted({s.process for s in self.samples})

    def summary(self) -> dict:
        return {
            "seconds": round(self.seconds, 1),
            "warm_up_s": round(self.warm_up_s, 1),
            "cycles": self.cycles,
            "jobs_ended": self.jobs_ended,
            "failures": self.failures,
            "qt_warnings": self.qt_warnings[:20],
            "trend": {p: self.trend(p) for p in self.processes()},
            "at_5_min": {p: self.at_minute(p, 5) for p in self.processes()},
            "at_end": {p: self.at_minute(p, self.seconds / 60 + 1) for p in self.processes()},
        }


RSS_NOISE_MB = 0.5
"""What a process's RSS moves between two idle samples with nothing kept (page-cache, arenas)."""


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope: robust to the saw-tooth of an allocator, unlike last minus first."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


class SoakDriver:
    """Drives a real ``MainWindow`` through its widgets, the way a user's clicks would."""

    def __init__(self, seconds: float, warm_up_cycles: int = 1) -> None:
        from PySide6.QtCore import QtMsgType, qInstallMessageHandler
        from PySide6.QtWidgets import QApplication

        from app.bridge import Bridge
        from app.main_window import MainWindow
        from workers.supervisor import Supervisor

        self.app = QApplication.instance() or QApplication([])
        self.report = SoakReport(seconds=seconds)
        self.warm_up_cycles = warm_up_cycles
        self._warning_type = QtMsgType.QtWarningMsg
        self._previous_handler = qInstallMessageHandler(self._on_qt_message)
        self.supervisor = Supervisor(restore_queue=False)
        self.bridge = Bridge(self.supervisor)
        self.window = MainWindow(self.bridge)
        self.open_jobs: dict[str, str] = {}
        self.queued_total = 0
        self.bridge.event.connect(self._on_event)
        self.window.show()
        self.supervisor.start()
        self.started = time.monotonic()
        self._last_sample = -SAMPLE_S

    # -- observation ------------------------------------------------------------------------

    def _on_qt_message(self, kind, context, message: str) -> None:
        if any(word in message for word in QT_LEAK_WORDS):
            self.report.qt_warnings.append(message)

    def _on_event(self, event) -> None:
        from workers.protocol import Cancelled, Failed, Finished, Queued

        match event:
            case Queued(job_id=job, request=request):
                self.open_jobs[job] = type(request).__name__
                self.queued_total += 1
            case Finished(job_id=job) | Cancelled(job_id=job) | Failed(job_id=job):
                kind = self.open_jobs.pop(job, "?")
                outcome = type(event).__name__.lower()
                key = f"{kind}:{outcome}"
                self.report.jobs_ended[key] = self.report.jobs_ended.get(key, 0) + 1
                if isinstance(event, Failed):
                    self.report.failures.append(f"{kind} failed: {event.kind} {event.message}")
                elif isinstance(event, Cancelled) and kind != "BrushRenderRequest":
                    self.report.failures.append(f"{kind} was cancelled, nobody asked it to")

    def _sample(self, idle: bool = False) -> None:
        import psutil

        from workers.protocol import WorkerKind

        now = time.monotonic() - self.started
        if now - self._last_sample < SAMPLE_S and not idle:
            return
        self._last_sample = now
        pids = {"gui": os.getpid()}
        for kind in WorkerKind:
            pid = self.supervisor.worker_pid(kind)
            if pid:
                pids[kind.value] = pid
        for name, pid in pids.items():
            try:
                process = psutil.Process(pid)
                rss, fds = process.memory_info().rss / 2**20, process.num_fds()
            except psutil.Error:
                continue
            self.report.samples.append(Sample(t=now, process=name, pid=pid, rss_mb=rss, fds=fds, idle=idle))

    def wait_until(self, condition, what: str, timeout_s: float = STEP_TIMEOUT_S) -> None:
        """Run the event loop until ``condition()`` holds; the window keeps painting meanwhile."""
        from PySide6.QtCore import QEventLoop, QTimer

        deadline = time.monotonic() + timeout_s
        failures = len(self.report.failures)
        while not condition():
            if len(self.report.failures) > failures:
                raise SoakFailed(f"soak: {self.report.failures[-1]} (while waiting for {what})")
            if time.monotonic() > deadline:
                raise SoakFailed(f"soak: timed out waiting for {what}")
            loop = QEventLoop()  # sleeps until an event or the tick: no busy loop stealing a core
            QTimer.singleShot(TICK_MS, loop.quit)
            loop.exec()
            self._sample()

    def _all_jobs_ended(self, what: str) -> None:
        self.wait_until(lambda: not self.open_jobs, what)

    def _submit_and_wait(self, submit, what: str) -> None:
        """Queued events reach the GUI a moment after ``submit`` returns: wait for one first."""
        before = self.queued_total
        submit()
        self.wait_until(lambda: self.queued_total > before, f"{what} to be queued", 30)
        self._all_jobs_ended(what)

    def _show_tab(self, title: str) -> None:
        self.window.tabs.setCurrentIndex(self.window.tab_titles().index(title))

    # -- one cycle over every tab -----------------------------------------------------------

    def chat(self, n: int) -> None:
        tab = self.window.tabs.widget(self.window.tab_titles().index("Chat"))
        self._show_tab("Chat")
        tab.max_tokens.setValue(24)
        tab.input.setPlainText(f"What is the capital of France? ({n})")
        self._submit_and_wait(tab.send, "the chat answer")
        self.wait_until(lambda: not tab.state.busy, "the chat tab to settle")

    def image(self, n: int) -> None:
        tab = self.window.image_tab
        self._show_tab("Image")
        self.window.image_tabs.setCurrentIndex(0)
        tab.prompt.setPlainText(f"a tiny red boat {n}")
        tab.steps.setValue(4)
        tab.seed.setValue(n)
        self._submit_and_wait(tab.generate, "the image")
        self.wait_until(lambda: tab.job is None, "the image tab to settle")
        if not Path(tab.result_path).is_file():
            self.report.failures.append(f"image {n}: no file at {tab.result_path!r}")

    def brushes(self, n: int, edits: int = 3) -> None:
        editor = self.window.image_tabs.widget(1)
        self._show_tab("Image")
        self.window.image_tabs.setCurrentIndex(1)
        editor.prompt_edit.setText(f"a mountain lake {n}")
        editor.steps_spin.setValue(6)
        self._submit_and_wait(editor.generate_base, "the brush base")
        self.wait_until(lambda: editor.document.has_session and editor.base_job is None, "the brush session")
        for edit in range(edits):
            editor.panel.add_layer()
            self._paint(editor, edit)
            self.wait_until(lambda: editor.render_job is not None, "the brush render to start", 30)
            self.wait_until(lambda: editor.render_job is None, "the brush render")
        self._all_jobs_ended("the brush jobs")
        if editor.document.composite is None:
            self.report.failures.append(f"brush session {n}: no composite after {edits} edits")

    def _paint(self, editor, edit: int) -> None:
        from PySide6.QtCore import QEvent, QPointF, Qt
        from PySide6.QtGui import QMouseEvent

        canvas = editor.canvas
        width, height = editor.document.size
        y = min(height * (edit + 1) / 5, height - 1)  # each edit paints its own band
        points = [QPointF(width * x / 8, y) for x in range(1, 8)]

        def send(kind, point, buttons):
            pos = point * canvas.zoom + canvas.pan
            button = Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
            self.app.sendEvent(
                canvas,
                QMouseEvent(kind, pos, canvas.mapToGlobal(pos), button, buttons, Qt.KeyboardModifier(0)),
            )

        held = Qt.MouseButton.LeftButton
        send(QEvent.Type.MouseButtonPress, points[0], held)
        for point in points[1:]:
            send(QEvent.Type.MouseMove, point, held)
        send(QEvent.Type.MouseButtonRelease, points[-1], Qt.MouseButton.NoButton)

    def video(self, n: int) -> None:
        tab = self.window.tabs.widget(self.window.tab_titles().index("Video"))
        self._show_tab("Video")
        tab.prompt.setPlainText(f"a cat playing piano {n}")
        tab.frames_box.setValue(4)
        tab.steps_box.setValue(2)
        self._submit_and_wait(tab.generate, "the video")
        self.wait_until(lambda: not tab.state.busy, "the video tab to settle")

    def music(self, n: int) -> None:
        tab = self.window.tabs.widget(self.window.tab_titles().index("Music"))
        self._show_tab("Music")
        tab.prompt.setPlainText(f"lofi beat {n}")
        tab.seconds.setValue(1.0)
        self._submit_and_wait(tab.generate, "the music clip")

    def run(self) -> SoakReport:
        try:
            self.wait_until(self._workers_ready, "the workers to start")
            n = 0
            # However slow the machine: two cycles after the warm-up, the fewest a trend is read from.
            while time.monotonic() - self.started < self.report.seconds or n < self.warm_up_cycles + 2:
                for action in (self.chat, self.image, self.brushes, self.video, self.music):
                    elapsed = time.monotonic() - self.started
                    print(f"soak {elapsed:6.0f} s: cycle {n} {action.__name__}", file=sys.stderr, flush=True)
                    action(n)
                n += 1
                self.report.cycles = n
                if n == self.warm_up_cycles:
                    self.report.warm_up_s = time.monotonic() - self.started
                self._sample(idle=True)
        except SoakFailed as exc:
            if str(exc) not in self.report.failures:
                self.report.failures.append(str(exc))
        finally:
            self.report.seconds = time.monotonic() - self.started
            self.close()
        return self.report

    def _workers_ready(self) -> bool:
        from workers.protocol import WorkerStatus

        states = self.supervisor.worker_states()
        return len(states) == 4 and all(s.status is WorkerStatus.ready for s in states.values())

    def close(self) -> None:
        from PySide6.QtCore import qInstallMessageHandler

        self.window.close()
        self.supervisor.shutdown()
        self.supervisor.store.close()
        qInstallMessageHandler(self._previous_handler)


def check(
    report: SoakReport, max_rss_slope_mb_per_min: float, max_fd_growth: int, *, few_cycles: bool = False
) -> list[str]:
    """What a user would notice: a crash, a failed job, or a process that keeps growing.

    ``few_cycles``: a run of a minute reads its slope from two or three cycles, where one step of
    the allocator (a render's buffers kept for the next one) reads as tens of MB a minute; there a
    process leaks only when it also grew at every cycle after warm-up, as a leak per job does."""
    problems = list(report.failures) + [f"Qt warning: {w}" for w in report.qt_warnings]
    for process in report.processes():
        trend = report.trend(process)
        if not trend:
            problems.append(f"{process}: too few samples after warm-up")
            continue
        grew_every_cycle = trend["rss_mb_least_growth_per_cycle"] > RSS_NOISE_MB
        if trend["rss_slope_mb_per_min"] > max_rss_slope_mb_per_min and (grew_every_cycle or not few_cycles):
            problems.append(f"{process}: RSS grows {trend['rss_slope_mb_per_min']:.2f} MB/min after warm-up")
        if trend["fds_max"] - trend["fds_after_warm_up"] > max_fd_growth:
            problems.append(
                f"{process}: open files grew from {trend['fds_after_warm_up']} to {trend['fds_max']}"
            )
    return problems


def isolated_dirs(root: Path) -> None:
    """A fresh, empty set of Hearth folders: the soak is also a first run."""
    for var in ("HEARTH_DATA_DIR", "HEARTH_CONFIG_DIR", "HEARTH_RUNTIME_DIR", "HEARTH_LOG_DIR"):
        os.environ[var] = str(root / var.removeprefix("HEARTH_").removesuffix("_DIR").lower())
    os.environ["HEARTH_ARBITER_SOCKET"] = str(root / "runtime" / "arbiter.sock")
    os.environ.setdefault("HEARTH_ARBITER_DEVICE", "sim:8GiB")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--json", default="", help="also write the report here")
    parser.add_argument("--max-rss-slope", type=float, default=1.0, help="MB per minute, per process")
    parser.add_argument("--max-fd-growth", type=int, default=4)
    args = parser.parse_args(argv)
    if not os.environ.get("QT_QPA_PLATFORM") and not os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    isolated_dirs(Path(tempfile.mkdtemp(prefix="hearth-soak-")))
    report = SoakDriver(seconds=args.minutes * 60).run()
    problems = check(report, args.max_rss_slope, args.max_fd_growth)
    summary = report.summary() | {"problems": problems, "samples": [asdict(s) for s in report.samples]}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    summary.pop("samples")
    print(json.dumps(summary, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
