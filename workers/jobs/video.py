"""The video worker's job: text- and image-to-video with memory-sliced diffusion (Streamlined Inference).

One render reads top to bottom: check the output path, load the pipeline (kept warm), ask the
arbiter for memory with tiers from ``memory_plan`` (background priority), denoise with the Feature
Slicer / Operator Grouping (and Step Rehash when asked) reporting every step with a preview frame,
checkpoint the latents, decode (retrying smaller on out-of-memory), export with metadata.

Families (``models.video.PIPELINES``): AnimateDiff on SD1.5 and SDXL (UNet: ``slicer.py`` slices
frames and rows, ``rehash.py`` replays the deep blocks), Wan 2.1/2.2 and LTX-Video (transformers:
``dit_slicer.py`` slices tokens; Step Rehash's deep/shallow split does not exist in a stack of
identical blocks, so diffusers' FirstBlockCache stands in for it).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

from workers.context import JobContext
from workers.errors import BadInput
from workers.outputs import output_path, request_parameters
from workers.protocol import VideoRequest

if TYPE_CHECKING:
    from workers.video.memory_plan import VideoPlan

PREVIEW_SIDE = 128
FIRST_BLOCK_CACHE_THRESHOLD = 0.2
"""Wan with step rehash: skip the remaining blocks while the first block's residual changes < 20%."""


def warm_up() -> None:
    """Pay diffusers' import cost (7-10 s on a small machine) before saying Hello, and clear what
    a killed worker left (temp files, checkpoints of renders nobody will finish)."""
    import diffusers

    from workers.launch import import_libraries
    from workers.leftovers import sweep_at_worker_start
    from workers.protocol import WorkerKind

    import_libraries(WorkerKind.video)

    diffusers.utils.logging.disable_progress_bar()
    sweep_at_worker_start()


def run(ctx: JobContext, request: VideoRequest) -> None:
    from models.video import family_label, load_video_pipeline
    from workers.devices import compute_device
    from workers.video.memory_plan import parse_memory_mode

    request.validate()
    path = _output_file(request, ctx.job_id)
    slices = parse_memory_mode(request.memory_mode)
    ctx.status(f"loading {request.model}")
    key = f"video:{request.model}"
    engine = ctx.cache.get_or_load(
        key, lambda: VideoEngine(load_video_pipeline(request.model), compute_device())
    )
    check_frames(engine.pipe, engine.family, request)
    image = first_frame(engine.pipe, request)
    plan = engine.lease(ctx, key, request, slices)
    start = time.perf_counter()
    latents = engine.denoise(ctx, request, image)
    denoise_s = time.perf_counter() - start
    params = request_parameters(
        request,
        family=family_label(engine.pipe),
        tier=plan.tier,
        frame_slices=plan.frame_slices,
        spatial_slices=plan.spatial_slices,
        denoise_seconds=round(denoise_s, 3),
        sampler=type(engine.pipe.scheduler).__name__.removesuffix("Scheduler"),
    )
    frames = engine.decode(ctx, latents, params)
    _export(ctx, frames, path, request, params)
    ctx.metric("denoise_seconds", denoise_s)
    ctx.metric("seconds", time.perf_counter() - start)


def _output_file(request: VideoRequest, job_id: str) -> Path:
    from workers.video.export import media_type

    path = output_path(request.out_path, job_id, f".{request.format}")
    media_type(path)  # an unsupported suffix fails now, before any work
    return path


def check_frames(pipe, family: str, request: VideoRequest) -> None:
    """Frames beyond the model's window, or a shape the model cannot make, are refused with the fix."""
    from models.video import family_label, frame_grid, max_frames

    limit = max_frames(pipe)
    if request.frames > limit:
        raise BadInput(
            f"{request.model} makes at most {limit} frames in one clip, got {request.frames}; "
            f"lower the frame count"
        )
    temporal, spatial = frame_grid(pipe)
    name = family_label(pipe).rsplit(" ", 1)[0]
    if temporal > 1 and (request.frames - 1) % temporal:
        examples = ", ".join(str(temporal * k + 1) for k in (1, 2, 3))
        raise BadInput(f"{name} makes {temporal}k+1 frames ({examples}, ...), got {request.frames}")
    if spatial > 8 and (request.width % spatial or request.height % spatial):
        raise BadInput(
            f"{name} needs width and height divisible by {spatial}, got {request.width}x{request.height}"
        )


def first_frame(pipe, request: VideoRequest):
    """The image an image-to-video model animates, fitted to the clip's size; None for text-to-video.

    The file is the user's (or anything a path names): its size is read from the header before a
    pixel is decoded (``workers.safe_images``)."""
    from models.video import family_label, is_image_to_video

    if not is_image_to_video(pipe):
        if request.image:
            raise BadInput(
                f"{request.model} is a {family_label(pipe)} model and takes no image; "
                "leave the image empty or pick an image-to-video model"
            )
        return None
    if not request.image:
        raise BadInput(f"{request.model} is an image-to-video model: give the first frame (--image)")
    from PIL import Image, ImageOps, UnidentifiedImageError

    from workers.safe_images import image_size

    image_size(request.image, f"first-frame image {request.image}")
    try:
        with Image.open(request.image) as image:
            return ImageOps.fit(image.convert("RGB"), (request.width, request.height), Image.LANCZOS)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadInput(f"first-frame image {request.image} is not a readable image ({exc})") from None


def _export(ctx: JobContext, frames, path: Path, request: VideoRequest, params: dict) -> None:
    from workers.video.export import export_video, media_type

    ctx.status(f"writing {path.name}")
    export_video(list(frames), path, request.fps, params)
    ctx.output(str(path), media_type(path))


class VideoEngine:
    """A loaded pipeline plus how it currently runs (plan, slicer); kept warm in the worker cache."""

    def __init__(self, pipe, device: str) -> None:
        from models.video import UNET_FAMILIES, denoisers, video_family

        family = video_family(pipe)
        assert family is not None  # load_video_pipeline refuses every other pipeline
        self.pipe = pipe
        self.device = device
        self.family = family
        self.is_unet = family in UNET_FAMILIES
        self.denoisers = denoisers(pipe)
        self.plan: VideoPlan | None = None
        """How the current lease's tier runs the model; set by ``lease`` before every render."""
        self.slicers: list = []
        self._offloaded = False

    # -- memory ---------------------------------------------------------------------------

    def lease(self, ctx: JobContext, key: str, request: VideoRequest, slices: int):
        """Ask the arbiter (tiers fast/large -> slow/small) and switch to the granted plan."""
        from workers.pause_points import pause_point_count
        from workers.video.memory_plan import manual_plan, plans, shape_of, tiers

        shape = shape_of(
            self.pipe, self.family, request.frames, request.height, request.width, request.guidance
        )
        plan_list = [manual_plan(shape, slices)] if slices else plans(shape)
        points = pause_point_count(self.denoisers[0])
        # Slicing changes between steps without reloading anything: memory may be given back.
        granted = ctx.lease_memory(
            key, tiers(plan_list, self.apply, points), on_release=self.release, can_grow=True
        )
        # A lease kept warm from an earlier job returns its old tier: re-derive this render's plan.
        plan = next((p for p in plan_list if p.tier == granted.name), plan_list[-1])
        self.apply(plan)
        return self.plan  # the plan in effect (an offloaded engine stays offloaded)

    def apply(self, plan) -> bool:
        """Switch to ``plan``; safe between any two denoising steps (slicing is exact).

        False when the weights are group-offloaded and the plan wants them resident: diffusers
        has no way to undo group offloading, so the render stays on its offloaded plan.
        """
        if self._offloaded and not plan.offload:
            return False
        self.plan = plan
        for slicer in self.slicers:
            if self.is_unet:
                slicer.frame_slices = max(1, plan.frame_slices)
                slicer.spatial_slices = max(1, plan.spatial_slices)
            else:
                slicer.token_slices = max(1, plan.frame_slices)
        if self.is_unet:
            if plan.forward_chunking:
                self.pipe.unet.enable_forward_chunking(chunk_size=1, dim=0)
            else:
                self.pipe.unet.disable_forward_chunking()
        self._place_weights(plan.offload)
        return True

    def _place_weights(self, offload: bool) -> None:
        if self.device == "cpu" or self._offloaded:
            return
        if offload:  # diffusers' group offloading: weights stream in per leaf module
            for denoiser in self.denoisers:
                denoiser.enable_group_offload(onload_device=self.device, offload_type="leaf_level")
            self._offloaded = True
            # Everything else goes to the device whole: VAE, text encoder(s) (SDXL has two), and
            # the image encoder of a Wan 2.1 image-to-video model.
            for part in self.pipe.components.values():
                if hasattr(part, "to") and hasattr(part, "parameters") and part not in self.denoisers:
                    part.to(self.device)
        else:
            self.pipe.to(self.device)

    def release(self) -> None:
        if not self._offloaded:
            self.pipe.to("cpu")

    # -- render ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def accelerated(self, ctx: JobContext, request: VideoRequest):
        """Install the slicer (sliced plans), Step Rehash (when asked) and the pause points for one
        render; removed after, also on cancel or error, so the warm pipeline is stock between jobs."""
        from workers.pause_points import PausePoints

        with contextlib.ExitStack() as stack:
            flush = _cuda_synchronize if self.device.startswith("cuda") else None
            for denoiser in self.denoisers:
                stack.enter_context(PausePoints(denoiser, lambda: ctx.pause_point(flush)))
            assert self.plan is not None  # leased before the render
            if self.plan.sliced:
                self.slicers = [stack.enter_context(s) for s in self._new_slicers()]
                stack.callback(setattr, self, "slicers", [])
            if request.step_rehash:
                self._step_rehash(stack, request)
            yield

    def _new_slicers(self) -> list:
        from workers.video.dit_slicer import TransformerSlicer, can_slice
        from workers.video.slicer import VideoSlicer

        assert self.plan is not None
        if self.is_unet:
            return [VideoSlicer(self.pipe.unet, self.plan.frame_slices, self.plan.spatial_slices)]
        return [TransformerSlicer(d, self.plan.frame_slices) for d in self.denoisers if can_slice(d)]

    def _step_rehash(self, stack: contextlib.ExitStack, request: VideoRequest) -> None:
        """UNets: Step Rehash replays the deep blocks on non-key steps. Transformers have no deep
        blocks to replay (every block works at full token resolution), so diffusers' FirstBlockCache
        does the job: the rest of the stack is skipped while the first block's residual barely moves."""
        if self.is_unet:
            from workers.video.rehash import StepRehash, uniform_key_steps

            keys = uniform_key_steps(request.steps, request.rehash_interval)
            slicer = self.slicers[0] if self.slicers else None
            stack.enter_context(StepRehash(self.pipe.unet, keys, slicer=slicer))
            return
        from diffusers import FirstBlockCacheConfig

        for transformer in self.denoisers:
            transformer.enable_cache(FirstBlockCacheConfig(threshold=FIRST_BLOCK_CACHE_THRESHOLD))
            stack.callback(transformer.disable_cache)

    def call_arguments(self, request: VideoRequest, image) -> dict:
        """What each pipeline takes beyond the common arguments."""
        extra: dict = {} if image is None else {"image": image}
        if type(self.pipe).__name__ == "AnimateDiffPipeline":
            extra["decode_chunk_size"] = 1
        if self.family == "ltx":
            extra["frame_rate"] = request.fps  # LTX scales its temporal positions by it
        return extra

    def unpack(self, latents, request: VideoRequest):
        """Latents as (B, C, F, h, w): LTX keeps its latents packed as tokens (B, N, C) until the end."""
        if self.family != "ltx":
            return latents
        pipe = self.pipe
        return pipe._unpack_latents(
            latents,
            (request.frames - 1) // pipe.vae_temporal_compression_ratio + 1,
            request.height // pipe.vae_spatial_compression_ratio,
            request.width // pipe.vae_spatial_compression_ratio,
            pipe.transformer_spatial_patch_size,
            pipe.transformer_temporal_patch_size,
        )

    def denoise(self, ctx: JobContext, request: VideoRequest, image=None):
        """Every step reports progress with a preview frame; a cancel stops at the next step."""
        import torch

        def on_step_end(pipeline, step, timestep, kwargs):
            ctx.step(
                step + 1,
                request.steps,
                f"step {step + 1}/{request.steps} ({self.plan.tier})",
                preview=preview_frame(self.unpack(kwargs["latents"], request)),
            )
            return kwargs

        generator = torch.Generator("cpu").manual_seed(request.seed)
        with self.accelerated(ctx, request), torch.no_grad():
            latents = self.pipe(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt or None,
                num_frames=request.frames,
                height=request.height,
                width=request.width,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                generator=generator,
                output_type="latent",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
                **self.call_arguments(request, image),
            ).frames
        return self.unpack(latents, request)

    def decode(self, ctx: JobContext, latents, params: dict):
        from workers.errors import OutOfMemory
        from workers.video.decode import checkpoint_path, decode_with_checkpoint

        ctx.status("decoding frames")
        checkpoint = checkpoint_path(ctx.job_id)
        assert self.plan is not None
        try:
            frames, used = decode_with_checkpoint(
                self.pipe, self.family, latents, self.plan, checkpoint, params, on_status=ctx.status
            )
        except OutOfMemory:
            raise  # its message tells the user the checkpoint is kept, to decode with more memory
        except BaseException:
            checkpoint.unlink(missing_ok=True)  # nothing will ever resume from it
            raise
        params["decode_chunk"], params["decode_tiling"] = used.decode_chunk, used.vae_tiling
        checkpoint.unlink(missing_ok=True)
        return frames


def _cuda_synchronize() -> None:
    import torch

    torch.cuda.synchronize()


def preview_frame(latents):
    """The middle frame of the first video as a small RGB image, straight from the latents (no VAE)."""
    import torch
    from PIL import Image

    from workers.jobs.image import LATENT_RGB_FACTORS

    frame = latents[0, :, latents.shape[2] // 2].float()  # (C, h, w)
    if frame.shape[0] == len(LATENT_RGB_FACTORS):
        rgb = torch.einsum("chw,cr->hwr", frame, torch.tensor(LATENT_RGB_FACTORS, device=frame.device))
        rgb = (rgb + 1) * 127.5
    else:  # other latent spaces (Wan): the first three channels, stretched to their range
        rgb = frame[:3].permute(1, 2, 0)
        rgb = (rgb - rgb.amin()) / (rgb.amax() - rgb.amin() + 1e-6) * 255
    image = Image.fromarray(rgb.clamp(0, 255).to(torch.uint8).cpu().numpy())
    scale = max(1, PREVIEW_SIDE // max(image.size))
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST)
