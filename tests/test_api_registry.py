"""Models the user linked with ``hearth models`` are served by the API under their registry ids,
never by a path a client sends."""

from __future__ import annotations

import openai
import pytest

from models.chat import save_tiny_chat_model
from models.registry import ModelRegistry
from tests.api_helpers import running_api
from workers.protocol import WorkerKind

pytestmark = pytest.mark.timeout(300)


def test_a_linked_chat_model_is_listed_and_answers_under_its_id(isolated_hearth_env, tmp_path_factory):
    folder = save_tiny_chat_model(tmp_path_factory.mktemp("linked") / "tiny-chat", seed=0)
    with ModelRegistry() as registry:
        linked = registry.add(folder)
    with running_api([WorkerKind.chat]) as api:
        client = api.client()
        listed = {m.id: m for m in client.models.list().data}
        assert listed[linked.id].model_extra["kind"] == "chat"
        assert listed[linked.id].model_extra["fit"]["verdict"] in ("fits", "fits_reduced", "cpu_only")
        answer = client.chat.completions.create(
            model=linked.id, messages=[{"role": "user", "content": "Hello!"}], max_tokens=4, temperature=0
        )
        assert answer.model == linked.id and answer.usage.completion_tokens > 0
        with pytest.raises(openai.NotFoundError):  # a path is not a model id over HTTP
            client.chat.completions.create(model=str(folder), messages=[{"role": "user", "content": "Hi"}])
