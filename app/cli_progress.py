"""Turns job events into what a terminal user sees: a progress bar, streamed text, a result line."""

from __future__ import annotations

import queue
import sys

from tqdm import tqdm

from workers.protocol import (
    Cancelled,
    ChatRequest,
    Failed,
    Finished,
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

    def follow(self, job_id: str, events: queue.Queue) -> int:
        """Print events of ``job_id`` until it ends; returns the process exit code."""
        print("hearth: starting worker...", file=sys.stderr, flush=True)
        while True:
            event = events.get()
            if getattr(event, "job_id", job_id) != job_id:
                continue
            code = self.show(event)
            if code is not None:
                self._close_bar()
                return code

    def show(self, event) -> int | None:
        match event:
            case WorkerState(status=WorkerStatus.crashed, detail=detail) if detail:
                print(f"hearth: {detail}", file=sys.stderr)
            case Progress(total=0, message=message) if message:
                self._close_bar()
                print(f"hearth: {message}", file=sys.stderr, flush=True)
            case Progress(step=step, total=total) if total and not self.streaming:
                self._bar(total).update(step - self.bar.n)
            case TextDelta(text=text):
                sys.stdout.write(text)
                sys.stdout.flush()
            case Output(path=path):
                self.outputs.append(path)
            case Finished(metrics=metrics):
                return self._finished(metrics)
            case Cancelled(at_step=step):
                print(f"\nhearth: cancelled at step {step}", file=sys.stderr)
                return 130
            case Failed(kind=kind, message=message):
                print(f"\nhearth: {kind.value}: {message}", file=sys.stderr)
                return 2 if kind.value == "bad_input" else 1
        return None

    def _finished(self, metrics) -> int:
        if self.streaming:
            sys.stdout.write("\n")
        self._close_bar()
        for path in self.outputs:
            print(path)
        details = ", ".join(f"{m.name}={m.value:.3g}" for m in metrics)
        if details:
            print(f"hearth: done ({details})", file=sys.stderr)
        return 0

    def _bar(self, total: int) -> tqdm:
        if self.bar is None or self.bar.total != total:
            self._close_bar()
            self.bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)
        return self.bar

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
