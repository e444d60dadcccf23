"""Find the models a user already has, without loading any weights, and identify each one.

Where they live: the huggingface_hub cache, folders the user names, and the usual folders of
ComfyUI, A1111/Forge, InvokeAI, LM Studio and Ollama under the home folder.
Everything here only reads. Anything odd — a symlink loop, an
unreadable folder, a truncated or hostile file — becomes an ``Unreadable`` entry naming why, or
is skipped; a scan never stops on one bad file.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from models.identify import identify
from models.identity import ModelIdentity
from workers.errors import HearthError

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth")
"""Files worth identifying in a model folder; pickle files are listed as such, never opened."""
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_LIBRARY = ("registry.ollama.ai", "library")
MAX_MANIFEST_BYTES = 1_000_000
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MAX_DEPTH = 8
MAX_ENTRIES = 20_000
"""Directory entries one walk looks at before it stops (a home folder given by mistake)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file or folder that may be a model, and where it was found."""

    path: Path
    """What to read: a file, a model folder, an Ollama blob."""
    source: str
    """``hf-cache``, ``comfyui``, ``a1111``, ``invokeai``, ``lmstudio``, ``ollama`` or ``folder``."""
    name: str
    """What the user calls it: a hub id, ``llama3.2:latest``, a file name."""
    location: str = ""
    """The registry's key for it: ``ollama:<name>:<tag>``, else the absolute path."""
    hub_id: str = ""

    def __post_init__(self) -> None:
        if not self.location:
            object.__setattr__(self, "location", os.path.abspath(self.path))


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Something that looked like a model but cannot be read, and why."""

    where: str
    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class Found:
    candidate: Candidate
    identity: ModelIdentity


@dataclass
class WalkBudget:
    """Entries one walk may still look at, shared by every folder it descends into."""

    limit: int = MAX_ENTRIES
    seen: set = field(default_factory=set)

    def __post_init__(self) -> None:
        self.left = self.limit


def scan(paths: Iterable[Path] = (), *, home: Path | None = None) -> list[Found | Unreadable]:
    """Identify every model under ``paths``, or in the usual places when none are given.

    A file reached twice (a symlinked folder, a shared model folder) is listed once.
    """
    results: list[Found | Unreadable] = []
    seen: set[str] = set()
    for item in find_candidates(paths, home=home):
        if isinstance(item, Unreadable):
            results.append(item)
            continue
        real = os.path.realpath(item.path)
        if real in seen:
            continue
        seen.add(real)
        results.append(identify_candidate(item))
    return results


def identify_candidate(candidate: Candidate) -> Found | Unreadable:
    try:
        identity = identify(candidate.path, candidate.name)
    except HearthError as exc:
        return Unreadable(candidate.location, candidate.source, str(exc))
    except Exception as exc:  # noqa: BLE001 - one file's surprise must not hide every other model
        log.exception("could not identify %s", candidate.path)
        return Unreadable(candidate.location, candidate.source, f"unreadable ({type(exc).__name__}: {exc})")
    return Found(candidate, identity)


def find_candidates(
    paths: Iterable[Path] = (), *, home: Path | None = None
) -> Iterator[Candidate | Unreadable]:
    paths = [Path(p).expanduser() for p in paths]
    if paths:
        for path in paths:
            yield from given_path(path)
        return
    home = home or Path.home()
    yield from hf_cache_models()
    for source, folder in known_places(home):
        yield from folder_models(folder, source)
    yield from ollama_models(ollama_dir(home))


def given_path(path: Path) -> Iterator[Candidate | Unreadable]:
    """A path the user named: a model file, a model folder, or a folder holding models."""
    if path.is_dir():
        yield from folder_models(path, "folder")
    elif path.exists():
        yield Candidate(path, "folder", path.name)
    else:
        yield Unreadable(str(path), "folder", "no such file or folder")


# --------------------------------------------------------------------------- the hub cache


def hf_cache_dir() -> Path:
    """huggingface_hub's cache folder, read from the environment now (its own constant is
    fixed when it is first imported): HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("HF_HOME") or cache / "huggingface").expanduser() / "hub"


def hf_cache_models(cache_dir: Path | None = None) -> Iterator[Candidate | Unreadable]:
    """Each cached model repo's newest snapshot: the folder when it is a model folder, else
    each model file in it (a GGUF repo holds one file per quantization)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache_dir = cache_dir or hf_cache_dir()
    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return
    except (OSError, ValueError) as exc:
        yield Unreadable(str(cache_dir), "hf-cache", str(exc))
        return
    for warning in info.warnings:
        yield Unreadable(str(cache_dir), "hf-cache", str(warning))
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        snapshot = max(repo.revisions, key=lambda r: r.last_modified).snapshot_path
        if is_model_folder(snapshot):
            yield Candidate(snapshot, "hf-cache", repo.repo_id, hub_id=repo.repo_id)
            continue
        for file in sorted(snapshot.rglob("*")):
            if file.suffix.lower() in MODEL_SUFFIXES:
                name = f"{repo.repo_id}/{file.relative_to(snapshot)}"
                yield Candidate(file, "hf-cache", name, hub_id=repo.repo_id)


# --------------------------------------------------------------------------- folders


def is_model_folder(folder: Path) -> bool:
    """A diffusers pipeline, or a config.json beside weights (a transformers model, a part)."""
    if (folder / "model_index.json").is_file():
        return True
    if not (folder / "config.json").is_file():
        return False
    return any(any(folder.glob(f"*{suffix}")) for suffix in WEIGHT_SUFFIXES)


def folder_models(
    root: Path, source: str, *, max_depth: int = MAX_DEPTH, budget: WalkBudget | None = None
) -> Iterator[Candidate | Unreadable]:
    """Model files and model folders under ``root``: hidden folders skipped, symlinked folders
    followed once (a loop ends where it started), at most ``max_depth`` deep and
    ``MAX_ENTRIES`` entries in all."""
    budget = budget or WalkBudget()
    stack = [(Path(root), 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in budget.seen:
                continue
            budget.seen.add((info.st_dev, info.st_ino))
            if is_model_folder(folder):
                yield Candidate(folder, source, folder.name)
                continue
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except OSError as exc:
            yield Unreadable(str(folder), source, exc.strerror or str(exc))
            continue
        for entry in entries:
            budget.left -= 1
            if budget.left < 0:
                yield Unreadable(
                    str(root), source, f"stopped after {budget.limit} entries: name a smaller folder"
                )
                return
            if entry.name.startswith("."):
                continue
            yield from _entry(entry, source, depth, max_depth, stack)


def _entry(entry: os.DirEntry, source: str, depth: int, max_depth: int, stack: list):
    try:
        is_dir = entry.is_dir()  # follows a symlink; a loop or a dangling link is not a folder
    except OSError:
        is_dir = False
    if is_dir:
        if depth < max_depth:
            stack.append((Path(entry.path), depth + 1))
    elif Path(entry.name).suffix.lower() in MODEL_SUFFIXES:
        yield Candidate(Path(entry.path), source, entry.name)


# --------------------------------------------------------------------------- other apps' folders


def known_places(home: Path) -> list[tuple[str, Path]]:
    """The model folders of ComfyUI, A1111/Forge, InvokeAI and LM Studio that exist under ``home``
    (each app's install folder directly in it or one level down, e.g. ``~/AI/ComfyUI``).
    ComfyUI's ``animatediff_models`` is where AnimateDiff-Evolved keeps motion modules."""
    places = []
    for comfy in _installs(home, "ComfyUI"):
        for sub in ("checkpoints", "diffusion_models", "unet", "loras", "vae", "animatediff_models"):
            places.append(("comfyui", comfy / "models" / sub))
    for webui in _installs(home, "stable-diffusion-webui*"):
        for sub in ("Stable-diffusion", "Lora", "VAE"):
            places.append(("a1111", webui / "models" / sub))
    invoke_root = Path(os.environ.get("INVOKEAI_ROOT") or home / "invokeai")
    places.append(("invokeai", invoke_root / "models"))
    places.append(("lmstudio", home / ".lmstudio" / "models"))
    places.append(("lmstudio", home / ".cache" / "lm-studio" / "models"))
    return [(source, folder) for source, folder in places if folder.is_dir()]


def _installs(home: Path, pattern: str) -> list[Path]:
    try:
        found = [*home.glob(pattern), *home.glob(f"[!.]*/{pattern}")]
    except OSError:
        return []
    return sorted(path for path in found if path.is_dir())


def ollama_dir(home: Path) -> Path:
    """Where Ollama keeps its models: OLLAMA_MODELS, else ~/.ollama/models."""
    return Path(os.environ.get("OLLAMA_MODELS") or home / ".ollama" / "models")


def ollama_models(models_dir: Path) -> Iterator[Candidate | Unreadable]:
    """Each Ollama model by its Ollama name (``ollama:llama3.2:latest``): its manifest
    (``manifests/<registry>/<namespace>/<name>/<tag>``) names the GGUF blob holding its weights."""
    manifests = models_dir / "manifests"
    if not manifests.is_dir():
        return
    for manifest in sorted(manifests.glob("*/*/*/*")):
        parts = manifest.relative_to(manifests).parts
        if any(part.startswith(".") for part in parts) or not manifest.is_file():
            continue
        name = f"{_ollama_name(*parts[:3])}:{parts[3]}"
        location = f"ollama:{name}"
        try:
            blob = _ollama_blob(manifest, models_dir / "blobs")
        except (OSError, ValueError) as exc:
            yield Unreadable(location, "ollama", str(exc))
            continue
        yield Candidate(blob, "ollama", name, location=location)


def _ollama_name(registry: str, namespace: str, model: str) -> str:
    """``llama3.2`` for the official library, ``user/model`` or ``host/user/model`` otherwise."""
    if (registry, namespace) == OLLAMA_LIBRARY:
        return model
    return f"{namespace}/{model}" if registry == OLLAMA_LIBRARY[0] else f"{registry}/{namespace}/{model}"


def _ollama_blob(manifest: Path, blobs: Path) -> Path:
    """The weights blob a manifest names; its digest must be a plain sha256, never a path."""
    if manifest.stat().st_size > MAX_MANIFEST_BYTES:
        raise ValueError(f"manifest {manifest} is too big to be an Ollama manifest")
    try:
        layers = json.loads(manifest.read_bytes()).get("layers")
    except (ValueError, AttributeError, RecursionError):
        raise ValueError(f"manifest {manifest} is not an Ollama manifest (unreadable JSON)") from None
    digests = [
        layer.get("digest")
        for layer in (layers if isinstance(layers, list) else [])
        if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_LAYER
    ]
    if not digests or not isinstance(digests[0], str) or not _DIGEST.fullmatch(digests[0]):
        raise ValueError(f"manifest {manifest} names no model layer with a sha256 digest")
    blob = blobs / digests[0].replace(":", "-")
    if not blob.is_file():
        raise ValueError(f"its weights blob {blob.name} is missing from {blobs}")
    return blob
