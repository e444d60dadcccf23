"""Reading and writing ``.hearth`` brush projects with only the standard library and PIL.

The GUI imports this module, so it must never import torch: the cached trajectory travels
through it as opaque bytes (a safetensors file) that only the worker (``project.py``) opens.

Layout of the zip:
    project.json            format, version, session parameters, layer list (no masks)
    base.png                the base image (generated or the imported photo, resized)
    trajectory.safetensors  cached latents z_T..z_0, timesteps, prompt embeddings
    masks/<layer id>.png    one 8-bit grayscale mask per layer, at image resolution
    render.png              the last composite (optional; a thumbnail for file browsers)
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.atomic import atomic_path
from workers.errors import BadInput
from workers.protocol import BrushLayer

FORMAT = "hearth-brushes"
VERSION = 1
SUFFIX = ".hearth"
MEDIA_TYPE = "application/x-hearth"
PARAMETER_KEYS = (
    "session_id",
    "model",
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "steps",
    "guidance",
    "seed",
    "source",
)
LAYER_KEYS = tuple(f.name for f in dataclasses.fields(BrushLayer) if f.name != "mask_png")


@dataclass
class BrushProject:
    """One ``.hearth`` file in memory."""

    params: dict[str, Any]
    """session_id, model, prompt, negative_prompt, width, height, steps, guidance, seed, source."""
    base_png: bytes
    trajectory: bytes
    layers: list[BrushLayer] = field(default_factory=list)
    render_png: bytes | None = None

    @property
    def session_id(self) -> str:
        return str(self.params["session_id"])

    @property
    def steps(self) -> int:
        return int(self.params["steps"])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.params["width"]), int(self.params["height"])


def write_project(path: Path | str, project: BrushProject) -> Path:
    """Write atomically: a crash or kill mid-save leaves the previous file untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "params": project.params,
        "layers": [{key: getattr(layer, key) for key in LAYER_KEYS} for layer in project.layers],
    }
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("project.json", json.dumps(manifest, indent=1, sort_keys=True))
        archive.writestr("base.png", project.base_png)
        archive.writestr("trajectory.safetensors", project.trajectory)
        for layer in project.layers:
            archive.writestr(f"masks/{layer.id}.png", layer.mask_png)
        if project.render_png:
            archive.writestr("render.png", project.render_png)
    return path


def read_project(path: Path | str) -> BrushProject:
    """Open a ``.hearth`` file; anything missing or malformed raises ``BadInput`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"project {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_archive(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise BadInput(f"{path.name} is not a readable Hearth project (damaged zip: {exc})") from None
    except (KeyError, ValueError, TypeError) as exc:
        raise BadInput(f"{path.name} is not a readable Hearth project ({exc})") from None


def _read_archive(archive: zipfile.ZipFile) -> BrushProject:
    manifest = json.loads(archive.read("project.json"))
    if manifest.get("format") != FORMAT:
        raise ValueError("not a brush project")
    if manifest.get("version") != VERSION:
        raise ValueError(f"version {manifest.get('version')!r}; this Hearth reads version {VERSION}")
    params = {key: manifest["params"][key] for key in PARAMETER_KEYS}
    names = set(archive.namelist())
    project = BrushProject(
        params=params,
        base_png=archive.read("base.png"),
        trajectory=archive.read("trajectory.safetensors"),
        render_png=archive.read("render.png") if "render.png" in names else None,
    )
    for entry in manifest["layers"]:
        fields = {key: entry[key] for key in LAYER_KEYS if key in entry}
        project.layers.append(BrushLayer(mask_png=archive.read(f"masks/{entry['id']}.png"), **fields))
    _check_images(project)
    return project


def _check_images(project: BrushProject) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(project.base_png)) as base:
            if base.size != project.size:
                raise ValueError(f"base image is {base.size}, parameters say {project.size}")
        for layer in project.layers:
            with Image.open(io.BytesIO(layer.mask_png)) as mask:
                if mask.size != project.size:
                    raise ValueError(f"mask of layer {layer.name or layer.id!r} has the wrong size")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"an image inside is damaged: {exc}") from None


def project_path_for(session_id: str) -> Path:
    """Default location of a session's project: the projects folder of the data dir."""
    from workers.paths import data_dir

    return data_dir() / "projects" / f"{session_id}{SUFFIX}"
