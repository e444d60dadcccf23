"""The Memory panel's timeline shows each app's leases over time, and forgets what is too old."""

from __future__ import annotations

from PySide6.QtGui import QColor

from app.memory_timeline import OWNER_COLOURS, MemoryTimeline, app_of
from workers.arbiter.messages import LeaseInfo, LedgerSnapshot
from workers.protocol import Priority

MIB = 1024**2


def snapshot(**leases_mib: int) -> LedgerSnapshot:
    leases = tuple(
        LeaseInfo(
            lease_id=f"L{i}",
            owner=f"{owner}-worker",
            pid=100 + i,
            job=owner,
            priority=Priority.background,
            bytes=mib * MIB,
            tier="resident",
            idle=False,
            revoking=False,
        )
        for i, (owner, mib) in enumerate(leases_mib.items())
    )
    return LedgerSnapshot(
        budget=1024 * MIB, total=1536 * MIB, headroom=512 * MIB, used_outside=256 * MIB, leases=leases
    )


def test_owners_are_grouped_by_app():
    assert app_of("video-worker") == "video" and app_of("chat-worker") == "chat"
    assert app_of("memory panel") == "other"


def test_timeline_stacks_apps_and_keeps_only_its_window(qtbot):
    timeline = MemoryTimeline(window_s=60)
    qtbot.addWidget(timeline)
    timeline.resize(400, 120)
    timeline.add_snapshot(snapshot(video=600), now=0.0)
    timeline.add_snapshot(snapshot(video=300, chat=400), now=30.0)
    timeline.add_snapshot(snapshot(video=300, chat=400), now=59.0)
    assert timeline.apps() == ["chat", "video"]
    timeline.add_snapshot(snapshot(chat=400), now=100.0)
    assert [p.at for p in timeline.points] == [59.0, 100.0]  # older than 60 s is dropped

    image = timeline.grab().toImage()
    colours = {image.pixelColor(x, y).name() for x in range(0, 400, 4) for y in range(20, 120, 4)}
    assert QColor(OWNER_COLOURS["chat"]).name() in colours
    assert QColor(OWNER_COLOURS["video"]).name() in colours
