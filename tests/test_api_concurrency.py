"""Eight API clients streaming at once while the window paints a brush layer, on the simulated device:
every stream completes, the window's edit is not queued behind them, and nothing runs out of memory."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from tests.api_helpers import running_api
from workers.protocol import (
    BrushBaseRequest,
    BrushLayer,
    BrushRenderRequest,
    Failed,
    Finished,
    JobOrigin,
    Queued,
    WorkerKind,
)

pytestmark = pytest.mark.timeout(600)
CLIENTS = 8


def square_mask(size: int) -> bytes:
    mask = np.zeros((size, size), np.uint8)
    mask[8:40, 8:40] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return buffer.getvalue()


def test_eight_streaming_clients_and_a_brush_edit_all_complete(isolated_hearth_env):
    with running_api([WorkerKind.chat, WorkerKind.image], start_timeout=300) as api:
        supervisor, recorder = api.supervisor, api.recorder
        base = BrushBaseRequest(session_id="window-edit", prompt="a harbour", width=48, height=48, steps=8)
        base_end = recorder.job_end(supervisor.submit(base), timeout=300)
        assert isinstance(base_end, Finished), base_end

        answers: dict[int, str] = {}
        errors: list[BaseException] = []

        def ask(index: int) -> None:
            try:
                stream = api.client(timeout=300).chat.completions.create(
                    model="smollm2-135m-instruct",
                    messages=[{"role": "user", "content": f"Say something about the number {index}."}],
                    max_tokens=128,
                    stream=True,
                    temperature=0.7,
                    seed=index,
                )
                answers[index] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                errors.append(exc)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        from_api = []
        recorder.until(  # every client's job is queued (one answers, the others wait their turn)
            lambda e: (
                isinstance(e, Queued)
                and e.origin is JobOrigin.api
                and not from_api.append(e)
                and len(from_api) == CLIENTS
            ),
            timeout=300,
        )
        layer = BrushLayer(id="l1", mask_png=square_mask(48), prompt="a boat", regen_step=4)
        edit = BrushRenderRequest(
            session_id="window-edit",
            project_path=str(_project(base)),
            width=48,
            height=48,
            steps=8,
            layers=(layer,),
            revision=1,
        )
        edit_id = supervisor.submit(edit)
        edit_end = recorder.job_end(edit_id, timeout=300)
        api_still_running = api.server.hub.active_jobs("127.0.0.1")
        for thread in threads:
            thread.join(300)

        assert not errors, errors
        assert isinstance(edit_end, Finished), edit_end
        assert sorted(answers) == list(range(CLIENTS)) and all(answers.values())
        # The window's edit ran on its own worker under its own lease: it did not wait for the API's queue.
        assert api_still_running > 0
        assert not [e for e in recorder.seen if isinstance(e, Failed)]


def _project(base: BrushBaseRequest):
    from workers.brushes.project_io import project_path_for

    return project_path_for(base.session_id)
