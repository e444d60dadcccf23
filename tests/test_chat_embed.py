"""Embeddings of a transformers chat model (the GGUF path runs in tests/test_api_chat.py): the last
layer's hidden states, mean-pooled and normalised, through a real chat worker."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.chat import save_tiny_chat_model
from tests.supervisor_helpers import running_supervisor
from workers.errors import BadInput
from workers.protocol import Embeddings, EmbedRequest, Finished, WorkerKind

pytestmark = pytest.mark.timeout(300)


def test_vectors_are_the_mean_of_the_last_hidden_states(isolated_hearth_env, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = save_tiny_chat_model(tmp_path / "model", seed=0)
    texts = ("hello there", "a different sentence entirely")
    with running_supervisor(WorkerKind.chat, start_timeout=120) as (supervisor, recorder):
        events = recorder.job(supervisor.submit(EmbedRequest(texts=texts, model=str(folder))))
    assert isinstance(events[-1], Finished), events[-1]
    vectors = next(e for e in events if isinstance(e, Embeddings)).vectors
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for text, vector in zip(texts, vectors, strict=True):
        with torch.no_grad():
            hidden = model(torch.tensor([tokenizer.encode(text)]), output_hidden_states=True).hidden_states[
                -1
            ]
        expected = hidden[0].mean(dim=0).numpy()
        assert np.allclose(vector, expected / np.linalg.norm(expected), atol=1e-4)


def test_an_empty_text_is_refused_before_any_worker():
    with pytest.raises(BadInput, match="non-empty"):
        EmbedRequest(texts=("ok", "")).validate()
