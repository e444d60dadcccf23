"""A minute of the soak run (``make soak`` runs thirty): the real window, all four real
workers, every tab used in turn, on an empty data folder."""

from __future__ import annotations

import pytest

from tests.soak import SoakDriver, check

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

SOAK_SECONDS = 60
WARM_UP_CYCLES = 2
"""A cycle takes about ten seconds: caches fill over the first two."""
# A minute holds only a few cycles after warm-up, so allow more than the 30-minute run's
# 1 MB/min: a leak per job (a widget, a pixmap, a model copy per request) still shows.
MAX_RSS_SLOPE_MB_PER_MIN = 20.0
MAX_FD_GROWTH = 4


def test_window_and_workers_stay_alive_and_flat_for_a_minute(qapp, hearth_dirs):
    report = SoakDriver(seconds=SOAK_SECONDS, warm_up_cycles=WARM_UP_CYCLES).run()
    assert report.cycles >= WARM_UP_CYCLES + 2, report.summary()
    assert {"gui", "chat", "image", "video", "music"} <= set(report.processes())
    problems = check(report, MAX_RSS_SLOPE_MB_PER_MIN, MAX_FD_GROWTH)
    assert not problems, problems
    assert report.jobs_ended.get("ChatRequest:finished", 0) >= 2
    assert report.jobs_ended.get("BrushRenderRequest:finished", 0) >= 2
