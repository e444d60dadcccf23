"""How the supervisor starts a worker process: forked from a warm forkserver, else spawned.

A spawned worker is a fresh interpreter importing torch, diffusers and transformers: 8-10 s of
CPU on a small machine, paid again by every worker and every restart after a crash, and four at
once when the window opens. A forkserver pays it once per supervisor process: it imports the
libraries of the supervisor's worker kinds, then forks each worker from that state in about
0.1 s.

A fork keeps what the libraries read from the environment as they loaded, so a worker is forked
only while the environment is the one the forkserver started with, apart from variables read
when used (Hearth's own ``HEARTH_*``); each worker is handed the supervisor's environment as it
is now. Otherwise, or with ``HEARTH_WORKER_START=spawn``, or where the platform has no
forkserver, the worker is spawned as before. The same ``worker_main`` runs either way.

Nothing preloaded may touch a GPU: a CUDA driver initialised before a fork is unusable in the
child. torch, diffusers and transformers do not at import time, bitsandbytes does and is replaced
by a stand-in there (``workers.warm_start``), and ``tests/test_worker_start.py`` checks that no
preload asks torch about CUDA. llama.cpp, whose CUDA build loads the CUDA runtime, is left to the
chat worker.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping
from multiprocessing import resource_tracker
from multiprocessing.context import ForkServerContext, SpawnContext

from workers.protocol import WorkerKind

START_METHOD_VARIABLE = "HEARTH_WORKER_START"
READ_WHEN_USED = ("HEARTH_", "PYTEST_", "TORCHINDUCTOR_CACHE_DIR")
"""Environment variables no preloaded library reads at import time: Hearth's own, pytest's
``PYTEST_CURRENT_TEST`` (it changes with every test) and the one torch's compiler sets to its
default in a process that imported it."""

SD_PIPELINE = "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion"  # with its CLIP and VAE
LIBRARIES: Mapping[WorkerKind, tuple[str, ...]] = {
    WorkerKind.image: ("torch", "diffusers", SD_PIPELINE),
    WorkerKind.video: ("torch", "diffusers", SD_PIPELINE),
    WorkerKind.chat: (),  # llama.cpp in the worker (see above); transformers on a job's first use
    WorkerKind.music: ("torch", "transformers", "transformers.models.musicgen.modeling_musicgen"),
}
"""What each kind of worker imports before it says Hello (its ``warm_up`` imports them too, at no
cost when the forkserver already has)."""

GROUP_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)
"""Blocked in the forkserver, so inherited blocked by every worker until ``worker_main`` has
installed its own handlers."""

WORKER_ENVIRONMENT = {
    # Progress reaches the user as events; library progress bars would only clutter the log.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}
"""Set in a worker before its libraries load; a value the user set wins."""

log = logging.getLogger(__name__)
_lock = threading.Lock()
_forkserver_environment: dict[str, str] | None = None


def apply_worker_environment() -> None:
    for name, value in WORKER_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def import_libraries(kind: WorkerKind) -> None:
    import importlib

    for name in LIBRARIES[kind]:
        importlib.import_module(name)


def worker_context(kinds: Iterable[WorkerKind]) -> ForkServerContext | SpawnContext:
    """The multiprocessing context for the next worker; the first call that picks the forkserver
    fixes what it preloads (the libraries of ``kinds``) and the environment it keeps."""
    global _forkserver_environment
    if os.name == "posix":
        # Started by the first worker either way, and as long-lived as the forkserver; it
        # unblocks SIGINT and SIGTERM in the calling thread as it starts, hence the restore.
        with _group_signals_blocked():
            resource_tracker.ensure_running()
    spawn = mp.get_context("spawn")
    if os.environ.get(START_METHOD_VARIABLE) == "spawn" or "forkserver" not in mp.get_all_start_methods():
        return spawn
    forkserver = mp.get_context("forkserver")
    environment = _import_time_environment()
    with _lock:
        if _forkserver_environment is None:
            forkserver.set_forkserver_preload(["workers.warm_start", *_preload(kinds)])
            _forkserver_environment = environment
        if environment != _forkserver_environment:
            changed = sorted(
                k
                for k in {*environment, *_forkserver_environment}
                if environment.get(k) != _forkserver_environment.get(k)
            )
            log.info(
                "spawning a worker: the environment changed since the forkserver started (%s)",
                ", ".join(changed),
            )
            return spawn
        _ensure_forkserver()
    return forkserver


def _ensure_forkserver() -> None:
    """Start the forkserver (or restart a dead one) with the signals a terminal sends the whole
    process group blocked: like the resource tracker, it must outlive a Ctrl-C, a hang-up or a
    SIGTERM that the supervisor answers by cancelling, so the workers it forked can unwind. Both
    exit when their parent does."""
    from multiprocessing import forkserver

    with _group_signals_blocked():
        forkserver.ensure_running()


@contextlib.contextmanager
def _group_signals_blocked() -> Iterator[None]:
    """Blocked in this thread, so in the processes it starts; afterwards as they were before."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, GROUP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _preload(kinds: Iterable[WorkerKind]) -> list[str]:
    names: dict[str, None] = {}  # ordered, once each
    for kind in kinds:
        names.update(dict.fromkeys(LIBRARIES[kind]))
    return list(names)


def _import_time_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(READ_WHEN_USED)}
