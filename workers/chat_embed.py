"""Text embeddings from the chat model, on the chat worker (``/v1/embeddings``).

Which layer: the last transformer layer's output after the model's final norm (llama.cpp's
``result_norm``; transformers' last ``hidden_states``), mean-pooled over each text's tokens and
L2-normalised, so a dot product is the cosine similarity. A GGUF runs on llama.cpp with its own
mean pooling (a context made for embeddings, kept warm beside the chat one); a transformers model
reuses the chat slot's weights.
"""

from __future__ import annotations

import math
from pathlib import Path

from workers.context import JobContext
from workers.protocol import Embeddings, EmbedRequest

EMBED_CONTEXT = 2048
"""Tokens per text on llama.cpp; a longer text is refused by name rather than cut silently."""


def run_embed(ctx: JobContext, request: EmbedRequest) -> None:
    from models.chat import gguf_file

    request.validate()
    gguf = gguf_file(request.model, allow_pickle=request.allow_pickle)
    if gguf is not None:
        vectors, tokens = _gguf_vectors(ctx, request, gguf)
    else:
        vectors, tokens = _transformers_vectors(ctx, request)
    ctx.send(Embeddings(job_id=ctx.job_id, vectors=vectors, prompt_tokens=tokens))
    ctx.metric("prompt_tokens", tokens)


def normalised(vector) -> tuple[float, ...]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return tuple(float(v) / norm for v in vector)


class EmbedSlot:
    """A llama.cpp context made for embeddings (mean pooling), loaded at the granted tier."""

    def __init__(self, path: Path, footprint, n_ctx: int) -> None:
        self.path, self.footprint, self.n_ctx = path, footprint, n_ctx
        self.llama = None
        self.gpu_layers: int | None = None

    def ensure(self, plan, on_status=lambda _: None) -> None:
        import llama_cpp

        from workers.chat_llama import threads, warm_up

        if self.llama is not None and self.gpu_layers == plan.gpu_layers:
            return
        self.unload()
        warm_up()
        on_status(f"Loading {self.path.name} on llama.cpp for embeddings ...")
        count = threads()
        self.llama = llama_cpp.Llama(
            model_path=str(self.path),
            n_ctx=self.n_ctx,
            n_batch=self.n_ctx,
            n_ubatch=self.n_ctx,
            n_gpu_layers=plan.gpu_layers,
            n_threads=count,
            n_threads_batch=count,
            embedding=True,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            verbose=False,
        )
        self.gpu_layers = plan.gpu_layers

    def unload(self) -> None:
        llama, self.llama, self.gpu_layers = self.llama, None, None
        if llama is not None:
            llama.close()


def _gguf_vectors(ctx: JobContext, request: EmbedRequest, path: Path):
    from workers.chat_llama import check_gguf, lease_gguf
    from workers.errors import BadInput

    footprint = check_gguf(path)
    n_ctx = min(EMBED_CONTEXT, footprint.context or EMBED_CONTEXT)
    key = f"embed:{request.model}:gguf:{n_ctx}"
    slot = ctx.cache.get_or_load(key, lambda: EmbedSlot(path, footprint, n_ctx))
    lease_gguf(ctx, key, slot, footprint, n_ctx)
    vectors, tokens = [], 0
    for index, text in enumerate(request.texts):
        ids = slot.llama.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(ids) > n_ctx:
            raise BadInput(
                f"input {index} is {len(ids)} tokens; embeddings read at most {n_ctx}", field="input"
            )
        tokens += len(ids)
        vectors.append(normalised(slot.llama.embed(text, normalize=False)))
        ctx.step(index + 1, len(request.texts), "embedding")
    return tuple(vectors), tokens


def _transformers_vectors(ctx: JobContext, request: EmbedRequest):
    import torch

    from workers.jobs.chat import prepare_model

    slot = prepare_model(ctx, request.model, "auto", request.allow_pickle, role="chat")
    chat = slot.loaded
    vectors, tokens = [], 0
    with slot.busy(), torch.no_grad():
        for index, text in enumerate(request.texts):
            ids = torch.tensor([chat.tokenizer.encode(text)], device=chat.model.device)
            tokens += ids.shape[1]
            hidden = chat.model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
            vectors.append(normalised(hidden[0].float().mean(dim=0).tolist()))
            ctx.step(index + 1, len(request.texts), "embedding")
    return tuple(vectors), tokens
