"""Worker side of ``.hearth`` projects: a brush session to and from a project (torch lives here)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from workers.brushes.project_io import BrushProject, read_project, write_project
from workers.brushes.render import BrushSession
from workers.brushes.trajectory import Trajectory
from workers.errors import BadInput


def trajectory_bytes(trajectory: Trajectory) -> bytes:
    import torch
    from safetensors.torch import save

    tensors = {
        "latents": trajectory.latents.contiguous(),
        "timesteps": trajectory.timesteps.contiguous(),
        "prompt_embeds": trajectory.prompt_embeds.contiguous(),
        "guidance": torch.tensor([trajectory.guidance], dtype=torch.float64),
    }
    if trajectory.pooled_embeds is not None:  # SDXL, SD3, Flux
        tensors["pooled_embeds"] = trajectory.pooled_embeds.contiguous()
    return save(tensors)


def trajectory_from_bytes(data: bytes, steps: int) -> Trajectory:
    from safetensors import SafetensorError
    from safetensors.torch import load

    from models.safetensors_header import require_safetensors_bytes

    try:
        require_safetensors_bytes(data, "trajectory.safetensors")
        tensors = load(data)
        trajectory = Trajectory(
            latents=tensors["latents"],
            timesteps=tensors["timesteps"],
            prompt_embeds=tensors["prompt_embeds"],
            guidance=float(tensors["guidance"][0]),
            pooled_embeds=tensors.get("pooled_embeds"),
        )
    except (SafetensorError, KeyError, ValueError, RuntimeError) as exc:
        raise BadInput(f"the project's cached trajectory is damaged ({exc})") from None
    if trajectory.steps != steps or trajectory.latents.shape[0] != steps + 1:
        raise BadInput(
            f"the project's cached trajectory has {trajectory.steps} steps, its parameters say {steps}"
        )
    return trajectory


def project_from_session(
    session: BrushSession, params: dict[str, Any], layers=(), render=None
) -> BrushProject:
    return BrushProject(
        params=dict(params),
        base_png=png_bytes(session.base_image),
        trajectory=trajectory_bytes(session.trajectory),
        layers=list(layers),
        render_png=png_bytes(render) if render is not None else None,
    )


def session_from_project(pipe, project: BrushProject) -> BrushSession:
    from PIL import Image

    trajectory = trajectory_from_bytes(project.trajectory, project.steps)
    width, height = project.size
    scale = getattr(pipe, "vae_scale_factor", 8)
    if tuple(trajectory.latents.shape[-2:]) != (height // scale, width // scale):
        raise BadInput(f"the project's cached trajectory is for another image size than {width} x {height}")
    channels = pipe.vae.config.latent_channels
    if trajectory.latents.shape[1] != channels:
        raise BadInput(
            f"the project's cached trajectory has {trajectory.latents.shape[1]} latent channels, "
            f"its model {project.params.get('model', '')!r} has {channels}: it was made with another model family"
        )
    base = Image.open(io.BytesIO(project.base_png)).convert("RGB")  # size checked by read_project
    params = project.params
    return BrushSession(
        session_id=project.session_id,
        pipe=pipe,
        trajectory=trajectory,
        base_image=base,
        prompt=params["prompt"],
        negative_prompt=params["negative_prompt"],
        model=params["model"],
    )


def save_session(
    path: Path | str, session: BrushSession, params: dict[str, Any], layers=(), render=None
) -> Path:
    return write_project(path, project_from_session(session, params, layers, render))


def open_session(pipe, path: Path | str) -> BrushSession:
    return session_from_project(pipe, read_project(path))


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
