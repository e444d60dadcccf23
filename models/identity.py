"""What a model file or folder is, as read from its headers: the record the scanner, the
registry and the ``hearth models`` commands pass around. Reading is ``models/identify.py``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from models.fit import TierEstimate


class FoundKind(StrEnum):
    """What a found model is for. The first four are the sub-apps; the rest are parts of a model."""

    chat = "chat"
    image = "image"
    video = "video"
    music = "music"
    lora = "lora"
    vae = "vae"
    motion_adapter = "motion_adapter"
    unknown = "unknown"


@dataclass(frozen=True, slots=True)
class Recognition:
    """A kind and family told from header keys or configs, and why Hearth cannot run it, if not."""

    kind: FoundKind
    family: str
    reason: str = ""
    """Why Hearth cannot run it today ("Flux single-file checkpoints are not supported yet"); "" if it can."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelIdentity:
    """A model identified without loading its weights."""

    path: str
    format: str
    """``safetensors``, ``gguf``, ``diffusers``, ``transformers`` or ``pickle``."""
    kind: FoundKind
    family: str
    parameters: int
    """Every tensor element in the file or folder (0 where the header cannot be read: pickle)."""
    dtype: str
    """The precision or quantization holding most of the bytes: ``F16``, ``BF16``, ``Q4_K_M``."""
    file_bytes: int
    reason: str = ""
    """Why Hearth cannot run it today; "" when it can."""
    tiers: tuple[TierEstimate, ...] = ()
    """Bytes each way of holding it takes, fastest first; none for a part (a LoRA, a VAE)."""

    @property
    def runnable(self) -> bool:
        return not self.reason

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "kind": self.kind.value,
            "family": self.family,
            "parameters": self.parameters,
            "dtype": self.dtype,
            "file_bytes": self.file_bytes,
            "runnable": self.runnable,
            "reason": self.reason,
            "tiers": [tier.to_json() for tier in self.tiers],
        }

    @classmethod
    def from_json(cls, data: dict) -> ModelIdentity:
        return cls(
            path=data["path"],
            format=data["format"],
            kind=FoundKind(data["kind"]),
            family=data["family"],
            parameters=int(data["parameters"]),
            dtype=data["dtype"],
            file_bytes=int(data["file_bytes"]),
            reason=data.get("reason", ""),
            tiers=tuple(TierEstimate.from_json(tier) for tier in data.get("tiers", ())),
        )
