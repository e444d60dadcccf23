"""``hearth``: the window, or ``hearth run ...`` / ``hearth arbiter ...`` for headless use."""

from __future__ import annotations

import sys

CLI_COMMANDS = ("run", "arbiter")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--self-test"]:
        from app.self_test import run_self_test

        return run_self_test()
    if argv[:1] == ["--arbiter"]:  # how a frozen bundle starts its arbiter process
        from workers.arbiter.server import main as arbiter_main

        return arbiter_main(argv[1:])
    if argv and argv[0] in CLI_COMMANDS:
        from app.cli import main as cli_main

        return cli_main(argv)
    from app.main import main as gui_main

    return gui_main(argv)


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.freeze_support()  # a frozen bundle re-enters here to start its worker processes
    sys.exit(main())
