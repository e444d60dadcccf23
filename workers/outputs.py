"""Where outputs go and how they carry their generation parameters (embedded + sidecar JSON)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from workers.atomic import atomic_path, check_writable, write_text
from workers.paths import outputs_dir
from workers.safe_names import path_inside, safe_name


def output_path(requested: str, job_id: str, suffix: str) -> Path:
    """The user's path (checked writable now, before any work) or a dated name in the outputs folder."""
    if requested:
        path = check_writable(Path(requested))
        return path if path.suffix else path.with_suffix(suffix)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return path_inside(outputs_dir(), f"{stamp}-{safe_name('job id', job_id)}{suffix}")


def request_parameters(request: Any, **extra: Any) -> dict[str, Any]:
    """A request's fields as plain JSON data, plus what the job adds (seed used, model, timing)."""
    params = {f.name: getattr(request, f.name) for f in dataclasses.fields(request) if f.name != "out_path"}
    params["job"] = type(request).__name__
    params.update(extra)
    return params


def a1111_parameters(params: dict[str, Any]) -> str:
    """The ``parameters`` text chunk other Stable Diffusion tools write and read."""
    lines = [params.get("prompt", "")]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    fields = {
        "Steps": params.get("steps"),
        "Sampler": params.get("sampler", "DDIM"),
        "CFG scale": params.get("guidance"),
        "Seed": params.get("seed"),
        "Size": f"{params.get('width')}x{params.get('height')}",
        "Model": params.get("model"),
        "Denoising strength": params.get("strength") if params.get("init_image") else None,
    }
    lines.append(", ".join(f"{k}: {v}" for k, v in fields.items() if v is not None))
    return "\n".join(lines)


def save_png(image: Any, path: Path, params: dict[str, Any]) -> None:
    """PNG with a ``parameters`` text chunk and the full JSON under ``hearth``, written atomically."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", a1111_parameters(params))
    info.add_text("hearth", json.dumps(params, sort_keys=True))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)


def write_sidecar(path: Path, params: dict[str, Any]) -> Path:
    sidecar = path.with_name(path.name + ".json")
    write_text(sidecar, json.dumps(params, indent=2, sort_keys=True, default=str))
    return sidecar
