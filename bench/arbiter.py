"""Four apps at once on one GPU: Hearth's arbiter against greedy sharing and a static split.

A seeded, ConsumerBench-style mixed trace (chat conversations, a burst of brush edits, a long
video render, two music clips, a foreign program growing mid-run; see
``bench/arbiter_sim/workloads.py``) runs on the simulated device three ways:
- ours: the real ``workers.arbiter.ledger.Ledger`` (not a re-implementation), fed the messages the
  worker runtime sends and obeyed the way the runtime obeys it;
- greedy: first come, first served, largest tier that fits the free memory at load time;
- static: the budget split equally between the four apps.

Reports out-of-memory errors (Hearth's and the foreign program's), interactive SLO attainment
(chat requests with time to first token <= 1 s and time per token <= 0.2 s, brush edits within
0.5 s), background throughput (the background-priority render's solo time over its time in the
mix, solo meaning alone on the device under the same policy; ``renders_throughput`` averages the
single-shot music clips in too), each render's ceiling under strict priority (solo over solo plus
the GPU work stronger apps did meanwhile: what no policy that keeps interactive work first can
beat), Jain's fairness over the four apps' speed relative to solo, and bytes reloaded; then the
same on twelve seeds (mean, min, max), since one trace is an anecdote.

    python bench/arbiter.py --quick     # the CPU run (about a second: it is a simulation)
    python bench/arbiter.py --gpu       # the same simulation (bench/gpu.sh calls every bench so)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arbiter_sim.workloads import (  # noqa: E402
    BRUSH,
    CHAT,
    DEVICE_TOTAL,
    WORKLOADS,
    Render,
    Trace,
    make_trace,
)
from bench.arbiter_sim.world import (  # noqa: E402
    POLICIES,
    Stats,
    run_policy,
    slo_met,
    solo_seconds,
    work_conserving_bound,
)
from bench.harness import emit  # noqa: E402
from workers.arbiter.units import GiB  # noqa: E402
from workers.protocol import Priority  # noqa: E402


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1 when every app gets the same share, 1/n when one gets it all."""
    square = sum(v * v for v in values)
    return sum(values) ** 2 / (len(values) * square) if square else 0.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def app_speeds(stats: Stats, trace: Trace, solo: dict[str, float]) -> dict[str, float]:
    """Each app's speed relative to running alone at its fastest tier (failures count 0)."""
    best_chat, best_brush = CHAT.tiers[0], BRUSH.tiers[0]
    chat = [
        min(
            1.0,
            (turn.prompt_tokens * best_chat.prefill_token_s + turn.answer_tokens * best_chat.step_s) / total,
        )
        for turn, (_, _, total) in zip(trace.chat_turns, stats.chat, strict=False)
    ]
    edit_solo = trace.brush_steps * best_brush.step_s
    renders = {app: [] for app in ("video", "music")}
    for render in trace.renders:
        renders[render.app].append(min(1.0, solo[render.label] / stats.renders[render.label]))
    return {
        "chat": _mean(chat),
        "image": _mean([min(1.0, edit_solo / latency) for latency in stats.edits]),
        "video": _mean(renders["video"]),
        "music": _mean(renders["music"]),
    }


def _is_background(render: Render) -> bool:
    return WORKLOADS[render.app].priority is Priority.background


def summarise(policy: str, trace: Trace) -> dict:
    stats = run_policy(policy, trace)
    solo = {render.label: solo_seconds(policy, trace, render) for render in trace.renders}
    chat_ok, edits_ok, interactive = slo_met(stats)
    # A render that never finished in the trace made no progress a user could use: 0.
    throughput = {r.label: min(1.0, solo[r.label] / stats.renders[r.label]) for r in trace.renders}
    ceiling = {
        r.label: work_conserving_bound(stats, r, solo[r.label])
        if stats.renders[r.label] != float("inf")
        else 0.0
        for r in trace.renders
    }
    background = [r.label for r in trace.renders if _is_background(r)]
    speeds = app_speeds(stats, trace, solo)
    finite = [t for t in (tpot for _, tpot, _ in stats.chat) if t != float("inf")]
    return {
        "ooms": len(stats.ooms),
        "ooms_hearth": sum(1 for _, who, _ in stats.ooms if who != "foreign program"),
        "ooms_foreign": sum(1 for _, who, _ in stats.ooms if who == "foreign program"),
        "slo_attainment": round((chat_ok + edits_ok) / interactive, 4),
        "chat_slo": round(chat_ok / max(1, len(stats.chat)), 4),
        "edit_slo": round(edits_ok / max(1, len(stats.edits)), 4),
        "chat_ttft_max_s": round(max(t for t, _, _ in stats.chat), 3),
        "chat_tpot_mean_s": round(_mean(finite), 4),
        "background_throughput": round(_mean([throughput[label] for label in background]), 4),
        "background_throughput_ceiling": round(_mean([ceiling[label] for label in background]), 4),
        "renders_throughput": round(_mean(list(throughput.values())), 4),
        "renders_throughput_ceiling": round(_mean(list(ceiling.values())), 4),
        "render_throughput": {label: round(t, 4) for label, t in throughput.items()},
        "render_throughput_ceiling": {label: round(c, 4) for label, c in ceiling.items()},
        "fairness_jain": round(jain(list(speeds.values())), 4),
        "app_speed": {app: round(speed, 4) for app, speed in speeds.items()},
        "bytes_reloaded_gib": round(stats.bytes_reloaded / GiB, 2),
        "peak_device_gib": round(stats.peak_used / GiB, 2),
        "revoke_deadlines_missed": stats.overdue,
        "first_ooms": stats.ooms[:3],
    }


SEEDS = range(1, 13)
SEED_KEYS = ("ooms", "slo_attainment", "background_throughput", "renders_throughput")


def across_seeds(quick: bool) -> dict:
    """The same comparison on twelve seeded traces: one trace is an anecdote."""
    runs = {
        policy: [summarise(policy, make_trace(seed, quick=quick)) for seed in SEEDS] for policy in POLICIES
    }
    out = {"seeds": f"{SEEDS.start}-{SEEDS.stop - 1}"}
    for policy, results in runs.items():
        out[policy] = {
            key: {
                "mean": round(_mean([r[key] for r in results]), 4),
                "min": round(min(r[key] for r in results), 4),
                "max": round(max(r[key] for r in results), 4),
            }
            for key in SEED_KEYS
        }
    return out


def _ratio(ours: dict, other: dict, key: str) -> float | None:
    return round(ours[key] / other[key], 3) if other[key] else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short trace (the default size on CPU)")
    parser.add_argument("--gpu", action="store_true", help="same simulation; printed for bench/gpu.sh")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    trace = make_trace(args.seed, quick=args.quick or not args.gpu)
    results = {policy: summarise(policy, trace) for policy in POLICIES}
    for policy, result in results.items():
        print(f"{policy:>7}: {result}", file=sys.stderr)
    seeds = across_seeds(quick=args.quick or not args.gpu)
    print(f"  seeds: {seeds}", file=sys.stderr)
    ours, greedy, static = results["ours"], results["greedy"], results["static"]
    config = {
        "trace": trace.describe(),
        "device_total_gib": DEVICE_TOTAL / GiB,
        "apps": {app: [t.name for t in w.tiers] for app, w in WORKLOADS.items()},
        "simulated": "discrete-event simulation driving the real Ledger; no GPU is used, even with --gpu",
        "background": "renders of background priority (the video); music clips are single-shot",
        "ceiling": "solo / (solo + GPU work stronger apps did during the render): strict priority's limit",
        "across_seeds": seeds,
    }
    ratio = {
        "slo_attainment_vs_greedy": _ratio(ours, greedy, "slo_attainment"),
        "slo_attainment_vs_static": _ratio(ours, static, "slo_attainment"),
        "background_throughput_vs_greedy": _ratio(ours, greedy, "background_throughput"),
        "fairness_vs_greedy": _ratio(ours, greedy, "fairness_jain"),
    }
    emit(
        "arbiter",
        config,
        ours,
        {"greedy": greedy, "static": static},
        ratio,
        device=f"simulated {DEVICE_TOTAL / GiB:.0f} GiB GPU (discrete-event simulation)",
        greedy=greedy,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
