"""The GUI process never loads the heavy libraries.

The layering itself is the import-linter contracts in pyproject.toml (`lint-imports`, run by
`make test`): app never imports torch or a worker pipeline, workers never import Qt, models
never import app. Those read the import statements; this test catches what they cannot see, an
import made by name at run time, by building the whole window in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "diffusers", "transformers", "accelerate", "bitsandbytes")


def test_the_window_loads_no_torch_diffusers_or_transformers():
    script = textwrap.dedent(f"""
        import sys
        import app.main
        from PySide6.QtWidgets import QApplication
        from app.fake_bridge import FakeBridge
        from app.main_window import MainWindow
        qapp = QApplication([])
        window = MainWindow(FakeBridge())
        window.memory_state.stop(wait_s=5)
        tabs = [m for m in ("app.chat_tab", "app.brush_editor", "app.video_tab", "app.music_tab") if m not in sys.modules]
        assert not tabs, f"not built: {{tabs}}"
        heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
        assert not heavy, heavy
    """)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}  # Hearth's dirs: the test's tmp_path (conftest)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
