"""Shared benchmark plumbing (see docs/BENCHMARKS.md).

- ``in_fresh_process("bench.module:function", **kwargs)`` runs one variant in a new interpreter and
  returns its result plus its peak memory: CPU VmHWM (reset through /proc/self/clear_refs) minus the
  RSS before the variant, or CUDA ``max_memory_allocated``. Never ru_maxrss (inherited by children),
  never tracemalloc (blind to torch).
- ``median_time`` repeats a callable and reports the median (shared machines are noisy).
- ``emit`` prints the one-line JSON every benchmark ends with.

Usage from a script: ``sys.path.insert(0, repo_root)`` then ``from bench.harness import ...``.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULT_MARK = "HEARTH_BENCH_RESULT "


def vmhwm_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024
    return 0


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), and CUDA's peak counter when present."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_since_reset(base_rss: int) -> dict[str, int]:
    peak = {"peak_rss_bytes": max(0, vmhwm_bytes() - base_rss)}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()
        peak["peak_cuda_bytes"] = int(torch.cuda.max_memory_allocated())
    return peak


def in_fresh_process(target: str, timeout: float = 600, threads: int = 1, **kwargs: Any) -> dict[str, Any]:
    """Run ``module:function(**kwargs)`` in a new interpreter; returns its dict plus peak memory.

    The function may call ``measure_from_here()`` after its setup (model load) so that only the
    measured part counts; otherwise the peak covers the whole call.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HEARTH_BENCH_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "bench.harness", target, json.dumps(kwargs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    raise RuntimeError(f"{target} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


_BASE = {"rss": 0}


def measure_from_here() -> None:
    """Called inside a variant after setup: the peak is measured from this point on."""
    _BASE["rss"] = rss_bytes()
    reset_peak()


def _child(target: str, kwargs_json: str) -> None:
    threads = int(os.environ.get("HEARTH_BENCH_THREADS", "1"))
    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    measure_from_here()
    result = function(**json.loads(kwargs_json)) or {}
    result.update(peak_since_reset(_BASE["rss"]))
    print(RESULT_MARK + json.dumps(result), flush=True)


def median_time(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> tuple[float, Any]:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs; returns (seconds, last result)."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _sync() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def device_name() -> str:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu:{platform.processor() or platform.machine()}:{os.cpu_count()}cores"


def emit(
    bench: str, config: dict, ours: dict, baseline: dict, ratio: dict, device: str | None = None, **extra: Any
) -> None:
    """Print the benchmark's result as the last line of stdout, one JSON object."""
    record = {
        "bench": bench,
        "device": device or device_name(),
        "config": config,
        "ours": ours,
        "baseline": baseline,
        "ratio": ratio,
        **extra,
    }
    print(json.dumps(record, sort_keys=False))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
