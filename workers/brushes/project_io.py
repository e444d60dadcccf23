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

import json
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.atomic import atomic_path, sweep_stale_temp_files
from workers.brushes.project_manifest import (
    FORMAT,
    LAYER_KEYS,
    MAX_LAYERS,
    VERSION,
    checked_layers,
    checked_manifest,
    checked_params,
)
from workers.errors import BadInput
from workers.protocol import BrushLayer
from workers.safe_archive import ArchiveLimits, ArchiveReader
from workers.safe_images import image_size
from workers.safe_names import path_inside, safe_name

SUFFIX = ".hearth"
MEDIA_TYPE = "application/x-hearth"
FIXED_ENTRIES = ("project.json", "base.png", "trajectory.safetensors", "render.png")
MASK_ENTRY = re.compile(r"masks/(?P<id>[^/]+)\.png")
MANIFEST_BYTES = 1 << 20
IMAGE_BYTES = 128 << 20
"""A 4096 x 4096 RGB PNG is at most ~50 MB even when it does not compress at all."""
LIMITS = ArchiveLimits(max_total_bytes=2 << 30, max_entries=len(FIXED_ENTRIES) + MAX_LAYERS)
"""2 GiB: a 4096-pixel session of 200 steps caches ~850 MB of latents; nothing real comes close."""


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
    layers = [{key: getattr(layer, key) for key in LAYER_KEYS} for layer in project.layers]
    # What Hearth writes it must be able to read back (and a bad id must not name a zip entry).
    checked_params(project.params)
    checked_layers(layers)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {"format": FORMAT, "version": VERSION, "params": project.params, "layers": layers}
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("project.json", json.dumps(manifest, indent=1, sort_keys=True))
        archive.writestr("base.png", project.base_png)
        archive.writestr("trajectory.safetensors", project.trajectory)
        for layer in project.layers:
            archive.writestr(f"masks/{layer.id}.png", layer.mask_png)
        if project.render_png:
            archive.writestr("render.png", project.render_png)
    sweep_stale_temp_files(path.parent, path.name)  # what earlier saves killed mid-write left
    return path


def read_project(path: Path | str) -> BrushProject:
    """Open a ``.hearth`` file as untrusted data; anything malformed, oversized or escaping raises
    ``BadInput`` naming the file and the check that failed, and nothing is opened."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"project {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_archive(ArchiveReader.open(archive, LIMITS))
    except BadInput as exc:
        raise BadInput(f"{path.name} is not a readable Hearth project ({exc})") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error) as exc:
        raise BadInput(f"{path.name} is not a readable Hearth project (damaged zip: {exc})") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # bad JSON (too deep, too); zipfile's own
        raise BadInput(f"{path.name} is not a readable Hearth project ({exc})") from None
    except MemoryError:
        raise BadInput(f"{path.name} is too large to open in the memory available") from None


def _read_archive(reader: ArchiveReader) -> BrushProject:
    _check_entry_names(reader.names())
    params, layer_fields = checked_manifest(json.loads(reader.read("project.json", MANIFEST_BYTES)))
    masks = {f"masks/{fields['id']}.png" for fields in layer_fields}
    unexpected = sorted(reader.names() - set(FIXED_ENTRIES) - masks)
    if unexpected:
        raise BadInput(f"unexpected entry {unexpected[0]!r} (no layer has that mask)")
    size = int(params["width"]), int(params["height"])
    has_render = "render.png" in reader.names()
    project = BrushProject(
        params=params,
        base_png=_image(reader, "base.png", "base image", size),
        trajectory=reader.read("trajectory.safetensors", LIMITS.max_total_bytes),
        render_png=_image(reader, "render.png", "last render", size) if has_render else None,
    )
    for fields in layer_fields:
        where = f"mask of layer {fields.get('name') or fields['id']!r}"
        mask = _image(reader, f"masks/{fields['id']}.png", where, size)
        project.layers.append(BrushLayer(mask_png=mask, **fields))
    return project


def _check_entry_names(names: set[str]) -> None:
    for name in sorted(names):
        match = MASK_ENTRY.fullmatch(name)
        if match:
            safe_name("layer id", match["id"])
        elif name not in FIXED_ENTRIES:
            raise BadInput(f"unexpected entry {name!r}")


def _image(reader: ArchiveReader, name: str, what: str, size: tuple[int, int]) -> bytes:
    """The PNG's bytes, its size read from the header (never decoded here) and matched to the project."""
    data = reader.read(name, IMAGE_BYTES)
    found = image_size(data, what)
    if found != size:
        raise BadInput(f"{what} is {found[0]} x {found[1]}, the project says {size[0]} x {size[1]}")
    return data


def project_path_for(session_id: str) -> Path:
    """Default location of a session's project: the projects folder of the data dir."""
    from workers.paths import projects_dir

    return path_inside(projects_dir(), safe_name("session id", session_id) + SUFFIX)
