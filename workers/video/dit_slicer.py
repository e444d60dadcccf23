"""Feature Slicer + Operator Grouping for video diffusion transformers (Wan 2.1/2.2, LTX-Video).

Streamlined Inference (NeurIPS 2024, §3.1-3.2) slices a UNet's activations along the frame axis for
spatial operators and along H for temporal ones (``slicer.py``). A video DiT has neither split:
its activations are one token sequence (B, N, D), N = latent frames x rows x columns, and its
self-attention mixes every token with every other. What carries over exactly:

- **Feature Slicer on the token axis**: every operator of a block except self-attention's keys and
  values is token-wise (the adaptive norms and their modulation, the query projection with its
  QK-norm and RoPE, the output projection, cross-attention to the text, the feed-forward and the
  gated residuals), so it runs on contiguous slices of N. Tokens are ordered frame by frame, so a
  slice is a run of latent frames (and rows). Self-attention stays exact because each query slice
  attends to the keys and values of the *whole* sequence, computed once per block (slice by
  slice, into two full-size buffers).
- **Operator Grouping**: after the keys and values, the rest of the block is one group: each
  token slice goes through self-attention, cross-attention and the feed-forward before the next
  slice starts, so the block's transients (the queries, the attention output, the feed-forward's
  hidden layer, 4x wider than the tokens in Wan and LTX) only ever exist for one slice. What is
  full size: the block input, its output, K and V.

Sliced equals unsliced up to float rounding (matrix products of fewer rows round differently);
``tests/test_video_families.py`` holds every family to 1e-4.

Ours: the grouped block forwards. Diffusers': the blocks' weights and modules, the attention
backend dispatch (``dispatch_attention_fn``, the same kernel the stock processors call), and the
``ModelHook`` mechanism the forwards are installed with (so they compose with pause points,
FirstBlockCache and group offloading).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workers.video.slicer import row_slices

HOOK_NAME = "hearth_dit_slicer"
SLICEABLE_BLOCKS = ("WanTransformerBlock", "LTXVideoTransformerBlock")


def transformer_blocks(transformer) -> list:
    """The denoiser's transformer blocks, in the order they run."""
    return list(
        getattr(transformer, "blocks", None) or getattr(transformer, "transformer_blocks", None) or []
    )


def can_slice(transformer) -> bool:
    """True for a Wan or LTX transformer whose attention projections are not fused."""
    blocks = transformer_blocks(transformer)
    return bool(blocks) and all(
        type(b).__name__ in SLICEABLE_BLOCKS and not getattr(b.attn1, "fused_projections", False)
        for b in blocks
    )


class TransformerSlicer:
    """Installs token-sliced, grouped forwards on every block of a Wan or LTX transformer.

    ``token_slices``: pieces the token axis is cut into; it can change between steps (an arbiter
    revoke). 1 runs each block as one group with the same arithmetic as diffusers' own forward.
    """

    def __init__(self, transformer, token_slices: int = 4) -> None:
        if not can_slice(transformer):
            raise ValueError(f"{type(transformer).__name__} has no blocks the token slicer knows")
        self.transformer = transformer
        self.token_slices = token_slices
        self.installed = False

    def install(self) -> TransformerSlicer:
        from diffusers.hooks import HookRegistry

        if self.installed:
            return self
        for block in transformer_blocks(self.transformer):
            forward = self._wan_block if type(block).__name__ == "WanTransformerBlock" else self._ltx_block
            HookRegistry.check_if_exists_or_initialize(block).register_hook(_forward_hook(forward), HOOK_NAME)
        self.installed = True
        return self

    def remove(self) -> None:
        if not self.installed:
            return
        for block in transformer_blocks(self.transformer):
            block._diffusers_hook.remove_hook(HOOK_NAME, recurse=False)
        self.installed = False

    def __enter__(self) -> TransformerSlicer:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.remove()

    # -- Wan ---------------------------------------------------------------------------------

    def _wan_block(self, block, hidden_states, encoder_hidden_states, temb, rotary_emb):
        """``WanTransformerBlock.forward``, grouped per token slice. hidden_states: (B, N, D)."""
        import torch

        if temb.ndim == 4:  # (B, N, 6, D): per-token timesteps (Wan 2.2 TI2V)
            mods = [
                m.squeeze(2) for m in (block.scale_shift_table.unsqueeze(0) + temb.float()).chunk(6, dim=2)
            ]
        else:  # (B, 6, D)
            mods = list((block.scale_shift_table + temb.float()).chunk(6, dim=1))  # each (B, 1, D)
        shift, scale, gate, c_shift, c_scale, c_gate = mods
        attn = block.attn1

        def modulated(rows):
            x = hidden_states[:, rows]
            return (block.norm1(x.float()) * (1 + _tok(scale, rows)) + _tok(shift, rows)).type_as(x)

        def rope(tensor, rows):  # (B, n, heads, head_dim), as WanAttnProcessor applies it
            if rotary_emb is None:
                return tensor
            cos, sin = rotary_emb  # (1, N, 1, head_dim) each
            return _wan_rope(tensor, cos[:, rows], sin[:, rows])

        def key_value(rows):
            x = modulated(rows)
            key = rope(attn.norm_k(attn.to_k(x)).unflatten(2, (attn.heads, -1)), rows)
            return key, attn.to_v(x).unflatten(2, (attn.heads, -1))

        slices = row_slices(hidden_states.shape[1], self.token_slices)
        key, value = _whole_sequence(key_value, slices, hidden_states.shape[1])
        out = torch.empty_like(hidden_states)
        for rows in slices:
            x = hidden_states[:, rows]
            query = rope(attn.norm_q(attn.to_q(modulated(rows))).unflatten(2, (attn.heads, -1)), rows)
            attended = _attend(attn, query, key, value).type_as(query)
            attended = attn.to_out[1](attn.to_out[0](attended))
            x = (x.float() + attended * _tok(gate, rows)).type_as(x)
            x = x + block.attn2(block.norm2(x.float()).type_as(x), encoder_hidden_states, None, None)
            normed = (block.norm3(x.float()) * (1 + _tok(c_scale, rows)) + _tok(c_shift, rows)).type_as(x)
            out[:, rows] = (x.float() + block.ffn(normed).float() * _tok(c_gate, rows)).type_as(x)
            del x, query, attended, normed
        return out

    # -- LTX-Video ---------------------------------------------------------------------------

    def _ltx_block(
        self,
        block,
        hidden_states,
        encoder_hidden_states,
        temb,
        image_rotary_emb=None,
        encoder_attention_mask=None,
    ):
        """``LTXVideoTransformerBlock.forward``, grouped per token slice. hidden_states: (B, N, D)."""
        import torch
        from diffusers.models.transformers.transformer_ltx import apply_rotary_emb

        batch = hidden_states.size(0)
        table = block.scale_shift_table[None, None].to(temb.device)
        ada = table + temb.reshape(batch, temb.size(1), table.shape[2], -1)  # (B, 1 or N, 6, D)
        shift, scale, gate, shift_mlp, scale_mlp, gate_mlp = ada.unbind(dim=2)
        attn = block.attn1

        def modulated(rows):
            return block.norm1(hidden_states[:, rows]) * (1 + _tok(scale, rows)) + _tok(shift, rows)

        def rope(tensor, rows):  # (B, n, inner), before the heads are split, as LTX applies it
            if image_rotary_emb is None:
                return tensor
            cos, sin = image_rotary_emb  # (B, N, inner) each
            return apply_rotary_emb(tensor, (cos[:, rows], sin[:, rows]))

        def key_value(rows):
            x = modulated(rows)
            key = rope(attn.norm_k(attn.to_k(x)), rows).unflatten(2, (attn.heads, -1))
            return key, attn.to_v(x).unflatten(2, (attn.heads, -1))

        slices = row_slices(hidden_states.shape[1], self.token_slices)
        key, value = _whole_sequence(key_value, slices, hidden_states.shape[1])
        out = torch.empty_like(hidden_states)
        for rows in slices:
            x = hidden_states[:, rows]
            query = rope(attn.norm_q(attn.to_q(modulated(rows))), rows).unflatten(2, (attn.heads, -1))
            attended = _attend(attn, query, key, value).to(query.dtype)
            x = x + attn.to_out[1](attn.to_out[0](attended)) * _tok(gate, rows)
            x = x + block.attn2(
                x,
                encoder_hidden_states=encoder_hidden_states,
                image_rotary_emb=None,
                attention_mask=encoder_attention_mask,
            )
            normed = block.norm2(x) * (1 + _tok(scale_mlp, rows)) + _tok(shift_mlp, rows)
            out[:, rows] = x + block.ff(normed) * _tok(gate_mlp, rows)
            del x, query, attended, normed
        return out


def _tok(tensor, rows):
    """A modulation tensor's rows for this slice: per-token (B, N, D) ones are cut, (B, 1, D) broadcast."""
    return tensor[:, rows] if tensor.shape[1] > 1 else tensor


def _whole_sequence(key_value: Callable, slices: list[slice], length: int):
    """Keys and values of all N tokens, (B, N, heads, head_dim) each, computed one slice at a time."""
    key: Any = None
    value: Any = None
    for rows in slices:
        k, v = key_value(rows)
        if key is None:
            key = k.new_empty((k.shape[0], length, *k.shape[2:]))
            value = v.new_empty((v.shape[0], length, *v.shape[2:]))
        key[:, rows], value[:, rows] = k, v
        del k, v
    return key, value


def _attend(attn, query, key, value):
    """The stock processors' attention call (same backend), for one slice of queries -> (B, n, inner)."""
    from diffusers.models.attention_dispatch import dispatch_attention_fn

    hidden = dispatch_attention_fn(
        query,
        key,
        value,
        attn_mask=None,
        dropout_p=0.0,
        is_causal=False,
        backend=getattr(attn.processor, "_attention_backend", None),
    )
    return hidden.flatten(2, 3)


def _wan_rope(hidden, freqs_cos, freqs_sin):
    """Wan's rotary embedding, exactly as ``WanAttnProcessor`` writes it (interleaved pairs)."""
    import torch

    x1, x2 = hidden.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(hidden)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(hidden)


def _forward_hook(forward: Callable):
    """A diffusers ``ModelHook`` whose ``new_forward`` is one of the grouped block forwards."""
    from diffusers.hooks import ModelHook

    class SlicedBlock(ModelHook):
        def new_forward(self, module, *args, **kwargs):
            return forward(module, *args, **kwargs)

    return SlicedBlock()
