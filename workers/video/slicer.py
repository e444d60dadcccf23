"""Feature Slicer + Operator Grouping for AnimateDiff's ``UNetMotionModel`` (Streamlined Inference,
NeurIPS 2024, §3.1-3.2).

A UNet video model keeps (B*F, C, H, W) activations, and its peak memory comes from the transient
tensors inside each block (GroupNorm/SiLU/conv outputs of a resnet, the concatenation of a skip in an
up block, the 4x larger output of an upsampler), each as large as the whole video's activation.

- **Feature Slicer**: spatial operators (resnets, spatial attention, up/down samplers) see one frame
  at a time, so they run on slices of the B*F axis; temporal operators (motion modules) see one
  spatial position at a time, so they run on slices of the H axis with all frames present.
- **Exact GroupNorm**: a motion module's GroupNorm takes its statistics over (C/G, F, H, W); slicing
  H naively changes them (about 1e-3 error). We take mean and variance over the whole tensor first
  and apply them per slice, so sliced == unsliced up to float rounding.
- **Operator Grouping**: consecutive spatial operators (skip concatenation, resnet, spatial
  attention, and an upsampler deferred from the previous up block) run together on each frame
  slice, so only the group's output is ever full size; motion modules update their input in place
  when nothing else holds it.

Ours: everything in this module (the grouped block forwards, the exact sliced GroupNorm, the
cross-block upsampler deferral). Diffusers': the ``ModelHook`` mechanism the forwards are installed
with (so they compose with diffusers' group offloading), and ``enable_forward_chunking`` of the
feed-forward layers, which ``memory_plan`` switches on for the leanest tier.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

HOOK_NAME = "hearth_video_slicer"

SPATIAL, TEMPORAL, EMIT = "spatial", "temporal", "emit"


@dataclass
class Op:
    kind: str
    fn: Callable | None = None
    """SPATIAL: ``fn(x_rows, rows) -> y_rows``; TEMPORAL: the motion module."""


def row_slices(length: int, count: int) -> list[slice]:
    """``count`` contiguous slices covering ``range(length)`` (fewer when length < count)."""
    count = max(1, min(int(count), length))
    size = math.ceil(length / count)
    return [slice(start, min(start + size, length)) for start in range(0, length, size)]


class VideoSlicer:
    """Installs sliced, grouped forwards on every block of a ``UNetMotionModel``.

    ``frame_slices``: pieces the B*F axis is cut into for spatial operators;
    ``spatial_slices``: pieces the H axis is cut into for motion modules. Both can change between
    steps (an arbiter revoke); 1 and 1 still groups operators but slices nothing.
    """

    def __init__(self, unet, frame_slices: int = 4, spatial_slices: int = 4) -> None:
        self.unet = unet
        self.frame_slices = frame_slices
        self.spatial_slices = spatial_slices
        self.installed = False
        self._deferred: tuple[object, object, object] | None = None  # (tensor, upsamplers, size)

    # -- install / remove -----------------------------------------------------------------

    def install(self) -> VideoSlicer:
        from diffusers.hooks import HookRegistry

        if self.installed:
            return self
        for block, forward in self._block_forwards():
            HookRegistry.check_if_exists_or_initialize(block).register_hook(_forward_hook(forward), HOOK_NAME)
        self.installed = True
        return self

    def remove(self) -> None:
        if not self.installed:
            return
        for block, _ in self._block_forwards():
            block._diffusers_hook.remove_hook(HOOK_NAME, recurse=False)
        self.installed = False
        self._deferred = None

    def __enter__(self) -> VideoSlicer:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.remove()

    def _block_forwards(self):
        unet = self.unet
        pairs = [(block, self._down_forward) for block in unet.down_blocks]
        if unet.mid_block is not None and hasattr(unet.mid_block, "motion_modules"):
            pairs.append((unet.mid_block, self._mid_forward))
        pairs += [(block, self._up_forward) for block in unet.up_blocks]
        return pairs

    # -- deferred upsampling (grouping across blocks) ---------------------------------------

    def deferred_upsample(self, tensor):
        """The upsampler still owed by ``tensor`` (an up block's output), or None."""
        if self._deferred is not None and self._deferred[0] is tensor:
            return self._deferred[1:]
        return None

    def defer_upsample(self, tensor, pending) -> None:
        """Re-attach an owed upsampler to ``tensor`` (Step Rehash replays a cached up-block output)."""
        self._deferred = None if pending is None else (tensor, *pending)

    # -- grouped block forwards ---------------------------------------------------------------

    def _down_forward(
        self,
        block,
        hidden_states,
        temb=None,
        encoder_hidden_states=None,
        attention_mask=None,
        num_frames=1,
        encoder_attention_mask=None,
        cross_attention_kwargs=None,
        additional_residuals=None,
        **_,
    ):
        ctx = _Inputs(
            temb, encoder_hidden_states, attention_mask, encoder_attention_mask, cross_attention_kwargs
        )
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        ops: list[Op] = []
        for resnet, attn, motion in zip(block.resnets, attentions, block.motion_modules, strict=True):
            ops += [
                Op(SPATIAL, ctx.resnet(resnet)),
                *([Op(SPATIAL, ctx.attention(attn))] if attn else []),
                Op(TEMPORAL, motion),
                Op(EMIT),
            ]
        if block.downsamplers is not None:
            ops += [Op(SPATIAL, _plain(down)) for down in block.downsamplers] + [Op(EMIT)]
        if additional_residuals is not None:  # ControlNet-style residuals: rare, keep diffusers' own path
            return _call_original(
                block,
                hidden_states,
                temb=temb,
                encoder_hidden_states=encoder_hidden_states,
                attention_mask=attention_mask,
                num_frames=num_frames,
                encoder_attention_mask=encoder_attention_mask,
                cross_attention_kwargs=cross_attention_kwargs,
                additional_residuals=additional_residuals,
            )
        hidden, outputs = self.run(ops, hidden_states, num_frames)
        return hidden, tuple(outputs)

    def _mid_forward(
        self,
        block,
        hidden_states,
        temb=None,
        encoder_hidden_states=None,
        attention_mask=None,
        cross_attention_kwargs=None,
        encoder_attention_mask=None,
        num_frames=1,
        **_,
    ):
        ctx = _Inputs(
            temb, encoder_hidden_states, attention_mask, encoder_attention_mask, cross_attention_kwargs
        )
        ops = [Op(SPATIAL, ctx.resnet(block.resnets[0]))]
        for attn, resnet, motion in zip(
            block.attentions, block.resnets[1:], block.motion_modules, strict=True
        ):
            ops += [Op(SPATIAL, ctx.attention(attn)), Op(TEMPORAL, motion), Op(SPATIAL, ctx.resnet(resnet))]
        return self.run(ops, hidden_states, num_frames)[0]

    def _up_forward(
        self,
        block,
        hidden_states,
        res_hidden_states_tuple,
        temb=None,
        encoder_hidden_states=None,
        cross_attention_kwargs=None,
        upsample_size=None,
        attention_mask=None,
        encoder_attention_mask=None,
        num_frames=1,
        **_,
    ):
        owed = self.deferred_upsample(hidden_states)
        if getattr(block, "s1", None):  # FreeU rescales whole tensors: keep diffusers' own path
            if owed:
                hidden_states = self.run([Op(SPATIAL, _upsample(*owed))], hidden_states, num_frames)[0]
            return _call_original(
                block,
                hidden_states,
                res_hidden_states_tuple,
                temb=temb,
                encoder_hidden_states=encoder_hidden_states,
                upsample_size=upsample_size,
                cross_attention_kwargs=cross_attention_kwargs,
                num_frames=num_frames,
                attention_mask=attention_mask,
                encoder_attention_mask=encoder_attention_mask,
            )
        ctx = _Inputs(
            temb, encoder_hidden_states, attention_mask, encoder_attention_mask, cross_attention_kwargs
        )
        ops: list[Op] = [Op(SPATIAL, _upsample(*owed))] if owed else []
        skips = list(res_hidden_states_tuple)
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for resnet, attn, motion in zip(block.resnets, attentions, block.motion_modules, strict=True):
            ops += [
                Op(SPATIAL, _concat(skips.pop())),
                Op(SPATIAL, ctx.resnet(resnet)),
                *([Op(SPATIAL, ctx.attention(attn))] if attn else []),
                Op(TEMPORAL, motion),
            ]
        hidden = self.run(ops, hidden_states, num_frames)[0]
        if block.upsamplers is None:
            return hidden
        if block is not self.unet.up_blocks[-1]:
            # The next up block runs this upsampler inside its first slice group, so the 4x larger
            # upsampled tensor never exists whole.
            self._deferred = (hidden, block.upsamplers, upsample_size)
            return hidden
        return self.run([Op(SPATIAL, _upsample(block.upsamplers, upsample_size))], hidden, num_frames)[0]

    # -- the slicing engine ---------------------------------------------------------------------

    def run(self, ops: list[Op], hidden, num_frames: int):
        """Run ``ops`` in order: runs of SPATIAL ops fused per frame slice, TEMPORAL per spatial slice."""
        outputs, group, owned = [], [], False
        for op in ops:
            if op.kind == SPATIAL:
                assert op.fn is not None  # a spatial op always carries its function
                group.append(op.fn)
                continue
            if group:
                hidden, group, owned = self.spatial(group, hidden), [], True
            if op.kind == TEMPORAL:
                hidden = self.temporal(op.fn, hidden, num_frames, in_place=owned)
            else:  # EMIT: the tensor is now also a skip connection, never modify it in place
                outputs.append(hidden)
                owned = False
        if group:
            hidden = self.spatial(group, hidden)
        return hidden, outputs

    def spatial(self, group: list[Callable], hidden):
        """Each frame slice goes through the whole group; only the group's output is full size."""
        import torch

        out = None
        for rows in row_slices(hidden.shape[0], self.frame_slices):  # rows of (B*F, C, H, W)
            y = hidden[rows]
            for fn in group:
                y = fn(y, rows)
            if out is None:
                out = torch.empty((hidden.shape[0], *y.shape[1:]), dtype=y.dtype, device=y.device)
            out[rows] = y
            del y
        return out

    def temporal(self, motion, hidden, num_frames: int, in_place: bool = False):
        """A motion module on slices of H with all frames present; GroupNorm statistics taken whole."""
        import torch

        batch_frames, channels, height, width = hidden.shape
        batch = batch_frames // num_frames
        video = hidden.view(batch, num_frames, channels, height, width)  # (B, F, C, H, W)
        scale, shift = _group_norm_affine(motion.norm, video)  # (B, 1, C, 1, 1) each
        out = hidden if in_place else torch.empty_like(hidden)
        out_video = out.view(batch, num_frames, channels, height, width)
        for rows in row_slices(height, self.spatial_slices):
            piece = video[:, :, :, rows, :]
            tokens = (piece * scale + shift).permute(0, 3, 4, 1, 2).reshape(-1, num_frames, channels)
            tokens = motion.proj_in(tokens)  # (B*h*W, F, inner)
            for block in motion.transformer_blocks:
                tokens = block(hidden_states=tokens)
            tokens = motion.proj_out(tokens)
            h = piece.shape[3]
            update = tokens.reshape(batch, h, width, num_frames, channels).permute(0, 3, 4, 1, 2) + piece
            out_video[:, :, :, rows, :] = update
            del tokens, update
        return out


def _group_norm_affine(norm, video):
    """Per (batch, channel) scale and shift equal to ``norm`` over (B, C, F, H, W), from whole-tensor stats."""
    import torch

    batch, frames, channels, height, width = video.shape
    groups = norm.num_groups
    grouped = video.view(batch, frames, groups, channels // groups, height, width)
    if video.dtype == torch.float32:
        var, mean = torch.var_mean(grouped, dim=(1, 3, 4, 5), unbiased=False)  # (B, G)
    else:  # half precision: accumulate one group at a time in float32 (a 1/G-size copy, not a full one)
        stats = [
            torch.var_mean(grouped[:, :, g].float(), dim=(1, 2, 3, 4), unbiased=False) for g in range(groups)
        ]
        var, mean = torch.stack([s[0] for s in stats], 1), torch.stack([s[1] for s in stats], 1)
    inv = torch.rsqrt(var + norm.eps).repeat_interleave(channels // groups, dim=1)  # (B, C)
    mean = mean.repeat_interleave(channels // groups, dim=1)
    weight = norm.weight.float() if norm.weight is not None else torch.ones_like(inv[0])
    bias = norm.bias.float() if norm.bias is not None else torch.zeros_like(inv[0])
    scale = inv * weight
    shift = bias - mean * scale
    shape = (batch, 1, channels, 1, 1)
    return scale.view(shape).to(video.dtype), shift.view(shape).to(video.dtype)


class _Inputs:
    """Per-frame conditioning (B*F rows each) cut to the same rows as the activations."""

    def __init__(
        self, temb, encoder_hidden_states, attention_mask, encoder_attention_mask, cross_attention_kwargs
    ):
        self.temb = temb
        self.text = encoder_hidden_states
        self.mask = attention_mask
        self.text_mask = encoder_attention_mask
        self.kwargs = cross_attention_kwargs

    def resnet(self, resnet) -> Callable:
        return lambda x, rows: resnet(input_tensor=x, temb=_rows(self.temb, rows))

    def attention(self, attn) -> Callable:
        def run(x, rows):
            return attn(
                hidden_states=x,
                encoder_hidden_states=_rows(self.text, rows),
                cross_attention_kwargs=self.kwargs,
                attention_mask=_rows(self.mask, rows),
                encoder_attention_mask=_rows(self.text_mask, rows),
                return_dict=False,
            )[0]

        return run


def _rows(tensor, rows):
    if tensor is None or getattr(tensor, "dim", lambda: 0)() == 0:
        return tensor
    return tensor[rows] if tensor.shape[0] > 1 else tensor


def _plain(module) -> Callable:
    return lambda x, rows: module(hidden_states=x)


def _concat(skip) -> Callable:
    import torch

    return lambda x, rows: torch.cat([x, skip[rows]], dim=1)


def _upsample(upsamplers, size) -> Callable:
    def run(x, rows):
        for upsampler in upsamplers:
            x = upsampler(hidden_states=x, output_size=size)
        return x

    return run


def _call_original(block, *args, **kwargs):
    hook = block._diffusers_hook.get_hook(HOOK_NAME)
    return hook.fn_ref.original_forward(*args, **kwargs)


def _forward_hook(forward: Callable):
    """A diffusers ``ModelHook`` whose ``new_forward`` is one of the grouped forwards above."""
    from diffusers.hooks import ModelHook

    class SlicedForward(ModelHook):
        def new_forward(self, module, *args, **kwargs):
            return forward(module, *args, **kwargs)

    return SlicedForward()
