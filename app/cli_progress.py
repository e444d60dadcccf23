"""Turns job events into what a terminal user sees: a progress bar, streamed text, a result line.

Everything but the result (paths, chat text) goes to stderr, so ``hearth run ... > file`` keeps
only the result.
"""

from __future__ import annotations

import contextlib
import sys

from tqdm import tqdm

from app.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from workers.protocol import (
    Cancelled,
    ChatRequest,
    Failed,
    Finished,
    JobStatus,
    Output,
    Progress,
    TextDelta,
    WorkerState,
    WorkerStatus,
)


class JobPrinter:
    def __init__(self, request) -> None:
        self.streaming = isinstance(request, ChatRequest)
        self.bar: tqdm | None = None
        self.outputs: list[str] = []
        self.streamed = 0
        """Characters of streamed text so far (what a cancelled chat keeps)."""

    def starting(self) -> None:
        with contextlib.suppress(OSError):
            say("starting worker...")

    def cancelling(self) -> None:
        with contextlib.suppress(OSError):
            self._close_bar()
            say("cancelling (Ctrl-C again to stop at once)...")

    def stopped(self) -> int:
        """A second Ctrl-C: the workers were stopped without waiting for the job."""
        with contextlib.suppress(OSError):
            self._close_bar()
            say("cancelled (the workers were stopped at once)")
        return EXIT_INTERRUPTED

    def show(self, event) -> int | None:
        """Print ``event``; once the job has ended, return the exit code. A terminal that went
        away (writes fail after a hang-up) loses the text, never the outcome."""
        try:
            self._print(event)
        except OSError:
            pass
        return exit_code(event)

    def _print(self, event) -> None:
        match event:
            case WorkerState(status=WorkerStatus.crashed, detail=detail) if detail:
                say(detail)
            case JobStatus(message=message) if message:
                self._close_bar()
                say(message)
            case Progress(step=step, total=total) if total and not self.streaming:
                self._bar(total).update(step - self.bar.n)
            case TextDelta(text=text):
                self.streamed += len(text)
                sys.stdout.write(text)
                sys.stdout.flush()
            case Output(path=path):
                self.outputs.append(path)
            case Finished(metrics=metrics):
                self._finished(metrics)
            case Cancelled(at_step=step):
                self._cancelled(step)
            case Failed(kind=kind, message=message):
                self._end_line()
                say(f"{kind.value}: {message}")

    def _cancelled(self, step: int) -> None:
        """Say what was kept: a file the job wrote before stopping, or the streamed text."""
        self._end_line()
        for path in self.outputs:
            say(f"cancelled: kept {path}")
            print(path)
        if self.streaming and self.streamed:
            say(f"cancelled: kept the answer so far ({self.streamed} characters)")
        if not self.outputs and not (self.streaming and self.streamed):
            say(f"cancelled at step {step}" if step >= 0 else "cancelled")

    def _end_line(self) -> None:
        self._close_bar()
        if self.streaming and self.streamed:
            sys.stdout.write("\n")
            sys.stdout.flush()

    def _finished(self, metrics) -> None:
        self._end_line()
        for path in self.outputs:
            print(path)
        details = ", ".join(f"{m.name}={m.value:.3g}" for m in metrics)
        if details:
            say(f"done ({details})")

    def _bar(self, total: int) -> tqdm:
        if self.bar is None or self.bar.total != total:
            self._close_bar()
            self.bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)
        return self.bar

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def exit_code(event) -> int | None:
    """The exit code of a job that ended with ``event``; None while it runs."""
    match event:
        case Finished():
            return EXIT_OK
        case Cancelled():
            return EXIT_INTERRUPTED
        case Failed(kind=kind):
            return EXIT_BAD_INPUT if kind.value == "bad_input" else EXIT_FAILED
    return None


def say(message: str) -> None:
    print(f"hearth: {message}", file=sys.stderr, flush=True)
