"""Chat in the window: how fast an answer appears in Hearth's chat tab, against plain llama-cpp-python.

The real main window (offscreen Qt) with a real supervisor and chat worker, on the embedded GGUF,
as a user runs it: the prompt typed into the chat tab, Send pressed. Timed from Send to the first
repaint of the transcript that shows the answer (time to first token) and from there to the last
repaint (decode), so the worker, IPC, the GUI thread and the transcript's rendering all count.
Plain llama-cpp-python (``bench.chat.PlainLlama``) answers the same prompt in this process, one
answer each in turn; each ratio is the median of neighbouring answers' ratios.

    python bench/chat_window.py            # 128 tokens, 3 repeats, 1 llama.cpp thread (~1 minute)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.chat import PlainLlama, _stop_arbiter, story  # noqa: E402
from bench.harness import emit  # noqa: E402

READY_TIMEOUT_S = 180
ANSWER_TIMEOUT_S = 300


def _scratch_dirs() -> None:
    scratch = tempfile.mkdtemp(prefix="hearth-bench-window-")
    for name in ("DATA", "CONFIG", "RUNTIME", "LOG"):
        os.environ[f"HEARTH_{name}_DIR"] = f"{scratch}/{name.lower()}"
    os.environ["HEARTH_ARBITER_SOCKET"] = f"{scratch}/runtime/arbiter.sock"
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class WindowChat:
    """The chat tab of a real main window, driven as a user drives it."""

    def __init__(self, gguf: str, max_new_tokens: int) -> None:
        from PySide6.QtWidgets import QApplication

        from app.bridge import Bridge
        from app.main_window import MainWindow
        from workers.protocol import WorkerKind
        from workers.supervisor import Supervisor

        self.app = QApplication.instance() or QApplication([])
        self.supervisor = Supervisor(kinds=[WorkerKind.chat], restore_queue=False)
        self.window = MainWindow(Bridge(self.supervisor))
        self.window.resize(1440, 900)
        self.window.show()
        self.supervisor.start()
        self.chat = self.window.chat_tab
        self.chat.state.update_settings(
            model=gguf,
            max_new_tokens=max_new_tokens,
            temperature=0.0,
            repetition_penalty=1.0,
            system_prompt="",  # the baseline's conversation is the user's message alone
        )
        self.renders: list[tuple[float, bool, bool]] = []
        """(when, showing part of an answer, answer ended) for each repaint of the transcript."""
        self.chat.view.textChanged.connect(self._on_render)
        self._wait(self._worker_ready, READY_TIMEOUT_S, "the chat worker to start")

    def _on_render(self) -> None:
        state = self.chat.state
        self.renders.append((time.perf_counter(), bool(state.partial), not state.busy))

    def _worker_ready(self) -> bool:
        from workers.protocol import WorkerKind, WorkerStatus

        return self.supervisor.worker_states()[WorkerKind.chat].status is WorkerStatus.ready

    def _wait(self, done, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            self.app.processEvents()
            time.sleep(0.001)  # the GUI thread idles as Qt's own loop would between events

    def ask(self, text: str) -> dict:
        state = self.chat.state
        state.new_conversation()
        self.app.processEvents()
        self.renders.clear()
        self.chat.input.setPlainText(text)
        start = time.perf_counter()
        self.chat.send()
        # The answer's end, then the repaint that shows it whole.
        self._wait(lambda: any(ended for _, _, ended in self.renders), ANSWER_TIMEOUT_S, "the answer")
        answer = [m for m in state.messages() if m.role == "assistant"][-1]
        if answer.state != "done":
            raise SystemExit(f"the answer ended {answer.state}: {self.chat.status_label.text()}")
        first = next(at for at, partial, _ in self.renders if partial)
        last = next(at for at, _, ended in self.renders if ended and at > first)
        metrics = self.chat.metrics_label.text()
        new_tokens = _tokens_from(metrics)
        return {
            "ttft_s": first - start,
            "decode_tok_s": (new_tokens - 1) / max(last - first, 1e-9),
            "new_tokens": new_tokens,
            "repaints": sum(first <= at <= last for at, _, _ in self.renders),
            "text": answer.content,
            "metrics_line": metrics,
        }

    def close(self) -> None:
        self.window.close()
        self.supervisor.shutdown()
        self.supervisor.store.close()


def _tokens_from(metrics_line: str) -> int:
    """The answer's token count from the tab's speed line ("64 tokens · 0.41 s to first ...")."""
    for part in metrics_line.replace("·", ",").split(","):
        words = part.split()
        if len(words) == 2 and words[1] == "tokens" and words[0].isdigit():
            return int(words[0])
    raise SystemExit(f"no token count in the chat tab's speed line: {metrics_line!r}")


def run(max_new_tokens: int, repeats: int) -> dict:
    from models.chat import embedded_run_path

    _scratch_dirs()
    gguf = str(embedded_run_path(lambda line: print(line, file=sys.stderr)))
    plain = PlainLlama(gguf)
    window = WindowChat(gguf, max_new_tokens)
    runs: dict = {"window": [], "llama_cpp": [], "model": Path(gguf).name}
    try:
        window.ask(story(99))  # warm-up: the load and the lease
        plain.ask(story(99), 4)
        for i in range(repeats):
            pair = [
                lambda i=i: runs["window"].append(window.ask(story(i))),
                lambda i=i: runs["llama_cpp"].append(plain.ask(story(i), max_new_tokens)),
            ]
            for step in pair if i % 2 == 0 else pair[::-1]:
                step()
    finally:
        window.close()
        plain.close()
        _stop_arbiter()
    for ours, theirs in zip(runs["window"], runs["llama_cpp"], strict=True):
        if ours["text"].strip() != theirs["text"].strip():
            raise SystemExit(f"the window's greedy answer differs:\n{ours['text']!r}\n{theirs['text']!r}")
    return runs


def _median(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 4)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ["HEARTH_LLAMA_THREADS"] = str(args.threads)
    started = time.perf_counter()
    runs = run(args.tokens, args.repeats)
    pairs = list(zip(runs["window"], runs["llama_cpp"], strict=True))
    ours = {key: _median(runs["window"], key) for key in ("ttft_s", "decode_tok_s", "new_tokens", "repaints")}
    ours["metrics_line"] = runs["window"][-1]["metrics_line"]
    baseline = {"llama_cpp": {key: _median(runs["llama_cpp"], key) for key in ("ttft_s", "decode_tok_s")}}
    ratio = {
        "window_decode_vs_llama_cpp": round(
            statistics.median(a["decode_tok_s"] / b["decode_tok_s"] for a, b in pairs), 3
        ),
        "window_ttft_vs_llama_cpp": round(statistics.median(a["ttft_s"] / b["ttft_s"] for a, b in pairs), 3),
    }
    config = {
        "model": runs["model"],
        "max_new_tokens": args.tokens,
        "repeats": args.repeats,
        "threads": args.threads,
        "greedy": True,
        "outputs_checked_equal": True,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    emit("chat_window", config, {"window": ours}, baseline, ratio)


if __name__ == "__main__":
    main()
