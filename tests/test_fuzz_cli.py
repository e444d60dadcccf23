"""Fuzzing ``hearth run image|chat|video|music|brush`` arguments: argparse refuses (exit 2), the
request is refused with ``BadInput``, or a valid request comes out; never another exception, and
nothing is written. No worker is started: only ``build_parser``, ``request_from_args`` and
``plan_brush`` run (settings and strategies: ``tests/test_fuzz.py``)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_fuzz import (
    DIGIT_RUNS,
    NUMBERS,
    bounded_memory,
    corpus_params,
    fuzz_settings,
    in_folder,
    long_run_timeout,
    no_writes_under,
)
from workers.errors import BadInput

pytestmark = long_run_timeout(300)
KINDS = ("image", "chat", "video", "music", "brush")
ARGV_CHARACTERS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00") | st.sampled_from(
    ("\udcff", "\udc80")  # undecodable argv bytes arrive as surrogate escapes
)
"""What a process's argv can hold on Linux: no NUL, no lone surrogate but surrogateescape's."""


def _flags() -> dict[str, list[str]]:
    from app.cli import build_parser

    def subparsers(parser):
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    run = subparsers(build_parser()).choices["run"]
    return {
        kind: [
            flag
            for action in parser._actions
            for flag in action.option_strings
            if flag not in ("-h", "--help")
        ]
        for kind, parser in subparsers(run).choices.items()
    }


FLAGS = _flags()


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """Paths an argument may name: folders, files, a real project and masks (good and bad)."""
    from PIL import Image

    from tests.test_fuzz_files import real_project
    from tests.test_hostile_projects import bomb_png

    root = tmp_path_factory.mktemp("fuzz-cli")
    (root / "work" / "sub").mkdir(parents=True)
    (root / "sentinel").mkdir()
    (root / "sentinel" / "keep.txt").write_text("untouched")
    (root / "work" / "project.hearth").write_bytes(real_project())
    (root / "work" / "a-file.txt").write_text("x")
    for name, size, color in (("mask.png", 64, 255), ("black.png", 64, 0), ("small.png", 8, 255)):
        Image.new("L", (size, size), color).save(root / "work" / name)
    (root / "work" / "bomb.png").write_bytes(bomb_png(13000, 13000))
    (root / "work" / "junk.png").write_bytes(b"\x89PNG junk")
    return {"root": str(root)}


PATHS = (
    "project.hearth",
    "new.hearth",
    "mask.png",
    "black.png",
    "small.png",
    "bomb.png",
    "junk.png",
    "missing.png",
    "out.png",
    "sub",
    "sub/out.png",
    "a-file.txt/out.png",
    "missing/out.png",
    "~",
    "~/out.png",
    "~nobody-here/x.png",
    "/",
    "/proc/self/status",
    "-",
    "",
    "x" * 300 + ".png",
)


def values() -> st.SearchStrategy[str]:
    numbers = NUMBERS.map(str) | st.sampled_from(("nan", "inf", "-inf", "1e999", "0x10", "1_000", " 8", "٣"))
    return st.one_of(
        numbers,
        st.sampled_from(PATHS),
        st.text(ARGV_CHARACTERS, max_size=12),
        DIGIT_RUNS,
        st.sampled_from(("auto", "nf4", "C G Am F", "4/4", "slices:2", "prompt_lookup", "--", "-1")),
    )


@st.composite
def argvs(draw) -> list[str]:
    """``run KIND`` and a few options: known flags with values, bare flags, stray tokens."""
    kind = draw(st.sampled_from(KINDS))
    argv = ["run", kind]
    if draw(st.integers(0, 4)):
        argv += ["--prompt" if kind != "brush" else "--project", draw(values())]
    for _ in range(draw(st.integers(0, 6))):
        match draw(st.integers(0, 5)):
            case 0:
                argv.append(draw(st.sampled_from(FLAGS[kind])))
            case 1:
                argv.append(draw(st.text(ARGV_CHARACTERS, max_size=8)))
            case _:
                argv += [draw(st.sampled_from(FLAGS[kind])), draw(values())]
    return argv


def check_argv(places: dict[str, str], argv: list[str]):
    """One argv: SystemExit(2) from argparse, ``BadInput``, or a request that validates (returned);
    nothing is written under the test's folders."""
    from app.cli import build_parser, request_from_args
    from app.cli_brush import plan_brush

    root = Path(places["root"])
    with no_writes_under(root), in_folder(root / "work"), bounded_memory():
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                args = build_parser().parse_args(argv)
        except SystemExit as exit:
            assert exit.code == 2 or _asks_for_help(argv), (exit.code, stderr.getvalue())
            return None
        try:
            request = plan_brush(args).request if args.kind == "brush" else request_from_args(args)
        except BadInput:
            return None
    request.validate()
    assert request.kind.value == ("image" if args.kind == "brush" else args.kind)
    return request


def _asks_for_help(argv: list[str]) -> bool:
    """argparse takes any unambiguous prefix of ``--help`` (exit 0 after printing help)."""
    return any(len(token) > 3 and "--help".startswith(token) for token in argv)


@fuzz_settings(100)
@given(argvs())
def test_fuzz_cli_arguments(places, argv):
    check_argv(places, argv)


@corpus_params("cli")
def test_fuzz_corpus_cli(places, case):
    """Each corpus file is a JSON list of arguments after ``hearth``."""
    check_argv(places, json.loads(case.read_text()))


def test_fuzz_cli_valid_arguments_make_requests(places):
    """The property's success branch is reachable: these make requests (the brush one from the
    real project and mask the strategies name)."""
    for argv in (
        ["run", "brush", "--project", "project.hearth", "--mask", "mask.png"],
        ["run", "brush", "--project", "new.hearth", "--new", "a cat"],
        ["run", "music", "--prompt", "lofi", "--meter", "3/4", "--out", "sub/out.wav"],
    ):
        assert check_argv(places, argv) is not None, argv
