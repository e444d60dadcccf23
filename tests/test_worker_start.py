"""Workers are forked from a warm forkserver (workers/launch.py) without inheriting its stale
environment, are spawned where a fork could not be trusted, and nothing preloaded touches a GPU."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from models.chat import save_tiny_chat_model
from tests.supervisor_helpers import running_supervisor
from workers import launch
from workers.conversations import ConversationStore
from workers.protocol import ChatMessage, ChatRequest, Finished, WorkerKind

FORKSERVER = "from multiprocessing.forkserver import main"


def _forkserver_of(pid: int) -> psutil.Process:
    parent = psutil.Process(pid).parent()
    assert parent is not None
    return parent


def test_a_worker_is_forked_warm_and_sees_the_supervisor_environment_of_now(tmp_path, monkeypatch):
    with running_supervisor(WorkerKind.chat) as (supervisor, _):
        first = supervisor.worker_states()[WorkerKind.chat].pid
        server = _forkserver_of(first)
        assert FORKSERVER in " ".join(server.cmdline()) and server.ppid() == os.getpid()

    # A later supervisor with other folders: its worker comes from the same forkserver, yet
    # streams the answer into the conversation store of the folders set now.
    monkeypatch.setenv("HEARTH_DATA_DIR", str(tmp_path / "later-data"))
    model = save_tiny_chat_model(tmp_path / "model", seed=0)
    store = ConversationStore()
    conversation = store.create("later")
    store.add_message(conversation.id, "user", "Hello!")
    request = ChatRequest(
        messages=(ChatMessage(role="user", content="Hello!"),),
        model=str(model),
        quant="fp32",
        max_new_tokens=4,
        conversation_id=conversation.id,
    )
    with running_supervisor(WorkerKind.chat) as (supervisor, recorder):
        assert _forkserver_of(supervisor.worker_states()[WorkerKind.chat].pid).pid == server.pid
        end = recorder.job_end(supervisor.submit(request))
    assert isinstance(end, Finished), end
    assert [m.role for m in store.messages(conversation.id)] == ["user", "assistant"]


def test_a_changed_library_environment_spawns_instead(monkeypatch):
    forked = launch.worker_context([WorkerKind.chat])
    assert forked.get_start_method() == "forkserver"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0" if os.environ.get("HF_HUB_OFFLINE") == "1" else "1")
    assert launch.worker_context([WorkerKind.chat]).get_start_method() == "spawn"
    monkeypatch.undo()
    monkeypatch.setenv("HEARTH_CONFIG_DIR", "/elsewhere")  # read when used: still forked
    assert launch.worker_context([WorkerKind.chat]).get_start_method() == "forkserver"


def test_the_user_can_ask_for_spawned_workers(monkeypatch):
    monkeypatch.setenv(launch.START_METHOD_VARIABLE, "spawn")
    assert launch.worker_context([WorkerKind.image]).get_start_method() == "spawn"


SPY_ON_CUDA = """
import torch, sys
touched = []
def spy(name, real):
    def call(*args, **kwargs):
        touched.append(name)
        return real(*args, **kwargs)
    return call
for name in ("is_available", "device_count", "init", "_lazy_init", "current_device",
             "get_device_properties", "get_device_capability", "is_bf16_supported", "mem_get_info"):
    setattr(torch.cuda, name, spy(name, getattr(torch.cuda, name)))
if hasattr(torch._C, "_cuda_getDeviceCount"):  # a CUDA build
    torch._C._cuda_getDeviceCount = spy("_cuda_getDeviceCount", torch._C._cuda_getDeviceCount)
import workers.warm_start
from workers.launch import LIBRARIES, import_libraries
for kind in LIBRARIES:
    import_libraries(kind)
print(",".join(touched))
from bitsandbytes.nn import Linear4bit  # the stand-in loads the real one in a worker
print(Linear4bit.__name__)
"""


def test_nothing_the_forkserver_preloads_asks_for_a_gpu():
    """A CUDA driver initialised in the forkserver would leave every forked worker without one."""
    result = subprocess.run([sys.executable, "-c", SPY_ON_CUDA], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    touched, loaded = result.stdout.splitlines()
    assert touched == "", f"preloading called torch.cuda: {touched}"
    assert loaded == "Linear4bit"
