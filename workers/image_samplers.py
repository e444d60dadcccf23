"""Samplers by the names A1111 and ComfyUI users know, as diffusers schedulers.

Each name in ``workers.protocol.IMAGE_SAMPLERS`` maps to a scheduler class and the flags that make
it that sampler (diffusers' own table of A1111 equivalents). A job's scheduler is always a fresh
one built ``from_config(pipe.scheduler.config)``: the cached pipeline keeps its own scheduler, so
brushes (their private DDIM) and later jobs never see another job's choice. The flags are written
out in full, because a model's config may already carry some (a checkpoint shipped with Karras
sigmas must not turn "DPM++ 2M" into "DPM++ 2M Karras").
"""

from __future__ import annotations

from typing import Any

from workers.errors import BadInput

_NO_SIGMA_SCHEDULE = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}
_DPMPP_2M = {"algorithm_type": "dpmsolver++", "solver_order": 2}

SAMPLER_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", _NO_SIGMA_SCHEDULE),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {**_DPMPP_2M, **_NO_SIGMA_SCHEDULE}),
    "DPM++ 2M Karras": (
        "DPMSolverMultistepScheduler",
        {**_DPMPP_2M, **_NO_SIGMA_SCHEDULE, "use_karras_sigmas": True},
    ),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", _NO_SIGMA_SCHEDULE),
    "LCM": ("LCMScheduler", {}),
}
"""A1111 name -> (diffusers scheduler class, the config flags that make it that sampler)."""


def scheduler_for(pipe, sampler: str):
    """A new scheduler for one job: ``sampler`` (an A1111 name), or a fresh copy of the model's own
    for ""; ``BadInput`` when the model cannot use it."""
    import diffusers

    own = pipe.scheduler
    if not sampler:
        return type(own).from_config(own.config)
    if sampler not in SAMPLER_SCHEDULERS:
        raise BadInput(f"unknown sampler {sampler!r}", field="sampler")
    if type(own).__name__.startswith("FlowMatch"):
        raise BadInput(
            f"sampler {sampler} is for noise-prediction models; this model samples by flow matching: "
            "leave the sampler empty",
            field="sampler",
        )
    class_name, flags = SAMPLER_SCHEDULERS[sampler]
    return getattr(diffusers, class_name).from_config(own.config, **flags)


def sampler_name(scheduler) -> str:
    """The A1111 name of ``scheduler`` (what a PNG's parameters say), else its class without "Scheduler"."""
    class_name = type(scheduler).__name__
    config = scheduler.config
    for name, (candidate, flags) in SAMPLER_SCHEDULERS.items():
        if candidate == class_name and all(config.get(key, value) == value for key, value in flags.items()):
            return name
    return class_name.removesuffix("Scheduler")


def job_pipelines(pipe, sampler: str, *, img2img: bool):
    """(text-to-image, image-to-image or None) pipelines for one job: views on ``pipe``'s own
    modules (diffusers' ``from_pipe`` shares them, no weight is copied), each with its own fresh
    scheduler, so nothing a job sets sticks to the cached pipeline."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    try:
        text2img = AutoPipelineForText2Image.from_pipe(pipe, scheduler=scheduler_for(pipe, sampler))
        image2image = (
            AutoPipelineForImage2Image.from_pipe(pipe, scheduler=scheduler_for(pipe, sampler))
            if img2img
            else None
        )
    except ValueError as exc:  # a pipeline family diffusers has no text/image-to-image twin for
        raise BadInput(f"{type(pipe).__name__} cannot do this here: {exc}") from None
    for view in (text2img, image2image):
        if view is not None:
            view.set_progress_bar_config(disable=True)
    return text2img, image2image
