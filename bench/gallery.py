"""The Gallery on a folder of thousands of outputs: how soon the first rows show, how long the whole
listing takes, how long the window's event loop is held up meanwhile, and how many thumbnails are
made (only the rows on screen), with a cold and then a warm thumbnail cache.

The baseline is the same event loop with no gallery at all: its longest stall is what the machine
itself costs (other processes, the scheduler), so the ratio is what the listing adds.

    python bench/gallery.py --quick     # 1,000 outputs; without --quick, 5,000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import emit  # noqa: E402

HEARTBEAT_MS = 10


def make_outputs(count: int) -> None:
    from PIL import Image

    from workers.outputs import save_png, write_sidecar
    from workers.paths import outputs_dir

    folder = outputs_dir()
    for i in range(count):
        path = folder / f"{i:05d}.png"
        params = {"job": "ImageRequest", "prompt": f"item {i}", "seed": i, "model": "demo-sd"}
        save_png(Image.new("RGB", (64, 64), (i % 255, 80, 160)), path, params)
        write_sidecar(path, params)


def heartbeat(app, until) -> tuple[float, int]:
    """Run the real event loop until ``until()``; (longest gap between 10 ms timer ticks in ms, ticks)."""
    from PySide6.QtCore import QEventLoop, QTimer

    ticks: list[float] = []
    loop = QEventLoop()
    beat = QTimer(interval=HEARTBEAT_MS)
    beat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    check = QTimer(interval=5)
    check.timeout.connect(lambda: until() and loop.quit())
    beat.start()
    check.start()
    loop.exec()
    beat.stop()
    check.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)] or [0.0]
    return round(max(gaps) * 1000, 1), len(ticks)


def listing(app, label: str) -> dict:
    from app.fake_bridge import FakeBridge
    from app.gallery_tab import GalleryTab

    tab = GalleryTab(FakeBridge())
    tab.resize(1200, 800)
    start = time.perf_counter()
    tab.show()
    first: list[float] = []

    def listed() -> bool:
        if not first and tab.items.rowCount():
            first.append(time.perf_counter() - start)
        return tab.scanned

    stall, _ = heartbeat(app, listed)
    all_listed = time.perf_counter() - start
    heartbeat(app, lambda: not tab.worker.busy)
    tab.shutdown()
    return {
        "cache": label,
        "first_rows_s": round(first[0] if first else 0.0, 3),
        "all_listed_s": round(all_listed, 2),
        "longest_gui_stall_ms": stall,
        "thumbnails_made": tab.worker.made,
        "rows": tab.items.rowCount(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 outputs instead of 5,000")
    args = parser.parse_args()
    count = 1000 if args.quick else 5000
    scratch = tempfile.mkdtemp(prefix="hearth-bench-gallery-")
    for name in ("DATA", "CONFIG", "RUNTIME", "LOG"):
        os.environ[f"HEARTH_{name}_DIR"] = f"{scratch}/{name.lower()}"
    if not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    make_outputs(count)
    end = time.perf_counter() + 3.0
    baseline_stall, _ = heartbeat(app, lambda: time.perf_counter() > end)
    cold, warm = listing(app, "cold"), listing(app, "warm")
    emit(
        "gallery",
        {"outputs": count, "view": "1200x800", "heartbeat_ms": HEARTBEAT_MS},
        {"cold": cold, "warm": warm},
        {"longest_gui_stall_ms": baseline_stall, "what": "the same event loop with no gallery"},
        {
            "stall_over_baseline": round(
                max(cold["longest_gui_stall_ms"], warm["longest_gui_stall_ms"]) / max(baseline_stall, 1.0), 2
            )
        },
        device="cpu (GUI thread, offscreen)",
    )


if __name__ == "__main__":
    main()
