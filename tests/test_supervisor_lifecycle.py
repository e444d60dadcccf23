"""Supervisor lifecycle: the queue survives a restart; killing the GUI process leaves no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

from workers.jobstore import JobStore, ProcessIdentity
from workers.paths import database_path
from workers.protocol import ImageRequest, JobState, Priority, Queued, WorkerKind
from workers.supervisor import Supervisor


def test_jobs_left_queued_by_a_previous_run_are_queued_again():
    store = JobStore(database_path())
    store.add("old-queued", ImageRequest(prompt="left in the queue"), Priority.single_shot)
    store.add("old-running", ImageRequest(prompt="was running at the crash"), Priority.background)
    store.set_state("old-running", JobState.running)
    store.add("old-done", ImageRequest(prompt="finished"), Priority.single_shot)
    store.set_state("old-done", JobState.finished)
    store.close()

    seen: list = []
    supervisor = Supervisor(kinds=[WorkerKind.image], listener=seen.append)
    supervisor.start()
    try:
        requeued = [e.job_id for e in seen if isinstance(e, Queued)]
        assert requeued == ["old-queued", "old-running"]
    finally:
        supervisor.shutdown()


def _identity_of(process: subprocess.Popen) -> ProcessIdentity:
    return ProcessIdentity(process.pid, psutil.Process(process.pid).create_time())


def test_a_window_takes_over_only_jobs_whose_hearth_process_is_gone():
    """Two windows, or a window and ``hearth run``, share one job store: a starting window must
    not run again what another live process is running, nor a ``hearth run`` job that died."""
    other_window = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    crashed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live, gone = _identity_of(other_window), _identity_of(crashed)
        crashed.kill()
        crashed.wait(10)
        JobStore(database_path(), owner=live).add("theirs", ImageRequest(prompt="a"), Priority.single_shot)
        orphans = JobStore(database_path(), owner=gone)
        orphans.add("orphan", ImageRequest(prompt="b"), Priority.single_shot)
        orphans.add("cli", ImageRequest(prompt="c"), Priority.single_shot, restorable=False)

        seen: list = []
        supervisor = Supervisor(kinds=[WorkerKind.image], listener=seen.append)
        supervisor.start()
        try:
            assert [e.job_id for e in seen if isinstance(e, Queued)] == ["orphan"]
            assert JobStore(database_path(), owner=gone).claim_unfinished() == [], "claimed once, by us"
        finally:
            supervisor.shutdown()
    finally:
        other_window.kill()
        other_window.wait(10)


def test_workers_die_with_a_killed_gui_process(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from workers.supervisor import Supervisor
        from workers.protocol import WorkerKind
        s = Supervisor(kinds=[WorkerKind.music, WorkerKind.chat], restore_queue=False)
        s.start()
        print(s.worker_pid(WorkerKind.music), s.worker_pid(WorkerKind.chat), flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
        env=dict(os.environ),
    )
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), "a worker outlived the GUI process"
    finally:
        parent.kill()
        parent.communicate(timeout=10)  # reaps it and closes its pipe


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
