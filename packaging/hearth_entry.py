"""Entry point of the frozen bundle (PyInstaller). Worker processes re-enter here too."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a spawned worker runs its target here and exits
    from app.__main__ import main

    sys.exit(main())
