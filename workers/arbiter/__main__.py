"""``python -m workers.arbiter``: run the VRAM arbiter (clients start it on demand)."""

import sys

from workers.arbiter.server import main

sys.exit(main())
