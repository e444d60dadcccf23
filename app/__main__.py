"""``hearth``: the window, or ``hearth run ...`` / ``hearth arbiter ...`` for headless use.

Reading the command line imports neither Qt nor torch: ``hearth --help``, ``--version`` and a
mistyped command answer at once, and on a machine without a display.
"""

from __future__ import annotations

import argparse
import sys

CLI_COMMANDS = {
    "run": "run one job headless: image, chat, video, music or brush (hearth run --help)",
    "arbiter": "the VRAM arbiter: print its ledger of leases (hearth arbiter status)",
    "serve": "the local OpenAI-compatible API, headless (hearth serve --help)",
    "api-key": "print the local API's key (made on first use)",
    "models": "the models on this machine: list, scan, add, remove, info (hearth models --help)",
    "info": "the generation parameters of an output: PNG, MP4, WAV, FLAC, ... (hearth info FILE [--json])",
    "cluster": "Hearth on several machines (Ray, optional): start, join, status, stop (hearth cluster --help)",
}
QT_OPTIONS_WITH_VALUE = frozenset(
    ("-platform", "-platformpluginpath", "-platformtheme", "-plugin", "-qmljsdebugger", "-style")
    + ("-stylesheet", "-session", "-display", "-geometry", "-qwindowgeometry", "-qwindowicon")
    + ("-qwindowtitle", "-title")
)
"""Qt's own options that take a value: passed on to Qt, like every other single-dash option."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--arbiter"]:  # how a frozen bundle starts its arbiter process
        from workers.arbiter.server import main as arbiter_main

        return arbiter_main(argv[1:])
    if argv and argv[0] in CLI_COMMANDS:
        from app.cli import main as cli_main

        return cli_main(argv)
    own, _qt = split_qt_options(argv)
    args = build_parser().parse_args(own)  # --help, --version and a bad command exit here
    if args.self_test:
        from app.self_test import run_self_test

        return run_self_test()
    from app.main import main as gui_main

    return gui_main(argv)


def build_parser() -> argparse.ArgumentParser:
    from app.main import add_window_options

    parser = argparse.ArgumentParser(
        prog="hearth",
        usage="%(prog)s [-h] [--version] [--self-test] [window options] [COMMAND ...]",
        description="Hearth: local generative AI on one GPU. Without a command, the window opens.",
        epilog="Qt's own options (-platform, -style, ...) are passed on to Qt.",
    )
    parser.add_argument("--version", action="version", version=f"hearth {_version()}")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="start the arbiter and the image and chat workers, make one image, ask one question",
    )
    add_window_options(parser)
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for name, summary in CLI_COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)  # parsed by app.cli
    return parser


def split_qt_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """Hearth's arguments, and Qt's (a single-dash option, with its value for those that take one)."""
    own: list[str] = []
    qt: list[str] = []
    items = iter(argv)
    for item in items:
        if item.startswith("-") and not item.startswith("--") and len(item) > 2:
            qt.append(item)
            if item in QT_OPTIONS_WITH_VALUE and (value := next(items, None)) is not None:
                qt.append(value)
        else:
            own.append(item)
    return own, qt


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hearth")
    except PackageNotFoundError:  # a bundle built without the package metadata
        return "(version unknown)"


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.freeze_support()  # a frozen bundle re-enters here to start its worker processes
    sys.exit(main())
