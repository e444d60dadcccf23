"""``hearth`` itself: help, version and a mistyped command answer without Qt or torch (and so
without a display); no command opens the window."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap

import pytest

from tests.cli_process import ROOT

HEAVY = ("PySide6", "torch", "diffusers", "transformers")


def run_entry(*args: str) -> subprocess.CompletedProcess:
    """``hearth ARGS`` in a fresh process with no display; it also reports what it imported."""
    script = textwrap.dedent(f"""
        import sys
        from app.__main__ import main
        try:
            code = main({list(args)!r})
        except SystemExit as exc:
            code = exc.code
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        print("imported:", heavy, file=sys.stderr)
        sys.exit(code)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_help_lists_the_commands_and_the_window():
    result = run_entry("--help")
    assert result.returncode == 0, result.stderr
    for word in ("run", "arbiter", "--version", "--tab", "Without a command, the window opens"):
        assert word in result.stdout
    assert "imported: []" in result.stderr


def test_version_prints_the_installed_version():
    result = run_entry("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"hearth {importlib.metadata.version('hearth')}"
    assert "imported: []" in result.stderr


@pytest.mark.parametrize(
    "args, problem",
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--tab"], "expected one argument"),
    ],
)
def test_a_mistyped_command_is_an_error_not_a_window(args, problem):
    result = run_entry(*args)
    assert result.returncode == 2, result.stderr
    assert problem in result.stderr
    assert "usage: hearth" in result.stderr
    assert "imported: []" in result.stderr


def test_the_installed_script_answers_too():
    hearth = os.path.join(os.path.dirname(sys.executable), "hearth")
    result = subprocess.run([hearth, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("hearth ")


@pytest.mark.parametrize(
    "argv",
    [[], ["--tab", "chat"], ["-platform", "offscreen"], ["--workers", "image", "-style", "fusion"]],
)
def test_no_command_opens_the_window_with_qt_options_passed_on(argv, monkeypatch):
    from app import __main__ as entry

    opened = []
    monkeypatch.setattr("app.main.main", lambda args: opened.append(args) or 0)
    assert entry.main(argv) == 0
    assert opened == [argv]


def test_run_and_arbiter_go_to_the_cli(monkeypatch):
    from app import __main__ as entry

    seen = []
    monkeypatch.setattr("app.cli.main", lambda args: seen.append(args) or 0)
    assert entry.main(["run", "image", "--prompt", "x"]) == 0
    assert entry.main(["arbiter", "status"]) == 0
    assert seen == [["run", "image", "--prompt", "x"], ["arbiter", "status"]]
