"""Which node a job goes to, and where its output lands: the placement and staging rules alone.

(Pure functions, but in the cluster's test files: collected only with the Ray extra.)"""

from __future__ import annotations

from pathlib import Path

from workers.arbiter.messages import LeaseInfo, LedgerSnapshot, Tier, WaitInfo
from workers.cluster.placement import choose, free_for_new_work, least_queued, offer
from workers.cluster.staging import local_destination, runs_on_users_machine, staged_request
from workers.protocol import BrushRenderRequest, ChatMessage, ChatRequest, ImageRequest, Priority

GiB = 1 << 30
TIERS = (Tier(name="resident", bytes=6 * GiB), Tier(name="offloaded", bytes=2 * GiB))


def ledger(budget: int, *, active: int = 0, idle: int = 0, waiting: int = 0) -> LedgerSnapshot:
    leases = []
    for n, (size, is_idle) in enumerate(((active, False), (idle, True))):
        if size:
            leases.append(
                LeaseInfo(
                    lease_id=f"L{n}",
                    owner="w",
                    pid=1,
                    job="j",
                    priority=Priority.background,
                    bytes=size,
                    tier="t",
                    idle=is_idle,
                    revoking=False,
                )
            )
    waits = tuple(
        WaitInfo(request_id=f"r{i}", owner="w", job="j", priority=Priority.background, reason="")
        for i in range(waiting)
    )
    return LedgerSnapshot(
        budget=budget, total=budget, headroom=0, used_outside=0, leases=tuple(leases), waiting=waits
    )


def offers(*specs, tiers=TIERS):
    return [
        offer(name, name, snapshot, tiers, local=name == "here", running_here=running)
        for name, snapshot, running in specs
    ]


def test_idle_warm_leases_count_as_free_the_arbiter_evicts_them_on_demand():
    assert free_for_new_work(ledger(10 * GiB, active=3 * GiB, idle=4 * GiB)) == 7 * GiB


def test_the_fastest_tier_wins_over_a_shorter_queue():
    picked = choose(offers(("here", ledger(4 * GiB), 0), ("far", ledger(8 * GiB), 3)), Priority.single_shot)
    assert (picked.name, picked.tier) == ("far", "resident")


def test_at_the_same_tier_the_least_queued_node_wins():
    picked = choose(
        offers(("here", ledger(8 * GiB, waiting=2), 0), ("far", ledger(8 * GiB), 0)), Priority.single_shot
    )
    assert picked.name == "far"


def test_interactive_work_stays_local_whenever_the_local_node_can_grant_a_tier():
    picked = choose(offers(("here", ledger(3 * GiB), 1), ("far", ledger(16 * GiB), 0)), Priority.interactive)
    assert (picked.name, picked.tier) == ("here", "offloaded")


def test_background_renders_prefer_the_node_with_most_free_memory():
    picked = choose(
        offers(("here", ledger(16 * GiB, active=6 * GiB), 0), ("far", ledger(12 * GiB), 1)),
        Priority.background,
    )
    assert picked.name == "far"


def test_no_node_can_grant_now_the_job_waits_or_queues_at_the_shortest_queue():
    full = offers(("here", ledger(1 * GiB), 0), ("far", ledger(1 * GiB, waiting=1), 0))
    assert choose(full, Priority.single_shot) is None
    assert least_queued(full).name == "here"


def test_a_job_of_unknown_tiers_fits_wherever_memory_is_free():
    picked = choose(
        offers(("here", ledger(2 * GiB, active=2 * GiB), 0), ("far", ledger(1), 0), tiers=None),
        Priority.single_shot,
    )
    assert picked.name == "far"


def test_outputs_go_through_staging_and_land_at_the_users_names(tmp_path):
    request = ImageRequest(prompt="x", out_path=str(tmp_path / "apple.png"), batch_count=3)
    staged = staged_request(request, "job1", Path("/staging"))
    assert staged.out_path == "/staging/job1.png" and request.out_path.endswith("apple.png")
    first = local_destination(request, "job1", "/staging/job1.png")
    assert first == tmp_path / "apple.png"
    assert local_destination(request, "job1", "/staging/job1-2.png", first) == tmp_path / "apple-2.png"


def test_jobs_that_need_this_machines_files_run_on_this_machine(tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"png")
    assert runs_on_users_machine(ImageRequest(prompt="x", init_image=str(photo)))
    assert runs_on_users_machine(ImageRequest(prompt="x", model=str(tmp_path)))
    assert not runs_on_users_machine(ImageRequest(prompt="x", model="demo-sd"))
    assert runs_on_users_machine(
        BrushRenderRequest(session_id="s", project_path="p.hearth", width=64, height=64, steps=8)
    )
    chat = (ChatMessage(role="user", content="hi"),)
    assert runs_on_users_machine(ChatRequest(messages=chat, conversation_id="c1"))
    assert not runs_on_users_machine(ChatRequest(messages=chat))
