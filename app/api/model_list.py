"""Which models the API serves, and whether each fits this machine.

A client names a model by its catalog id (``GET /v1/models`` lists them with their kind and
Hearth's fit verdict). Local paths are not accepted over HTTP: a program talking to the API must
not make Hearth open files of its choosing; the window and the CLI take paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from app.api.errors import ApiError, missing_model
from models.catalog import CATALOG, CatalogEntry, ModelKind
from workers.machine import detect_machine

CREATED = 1_767_225_600
"""``created`` of every listed model (2026-01-01): OpenAI's shape needs a time, the catalog has none."""


@dataclass(frozen=True, slots=True)
class Fit:
    verdict: str
    """``fits`` (its fastest tier fits), ``fits_reduced`` (a smaller tier fits) or ``too_big``."""
    tier: str
    """The fastest tier that fits, or the smallest when none does."""


@lru_cache(maxsize=1)
def device_memory() -> tuple[str, int]:
    """(device, bytes) the arbiter would share: the GPU's memory, else system memory."""
    info = detect_machine()
    return ("cuda", info.vram_bytes) if info.gpu_name else ("cpu", info.ram_bytes)


def fit_of(item: CatalogEntry, capacity: int) -> Fit:
    tiers = list(item.memory_bytes.items())  # fastest first
    for index, (tier, size) in enumerate(tiers):
        if size <= capacity:
            return Fit("fits" if index == 0 else "fits_reduced", tier)
    return Fit("too_big", tiers[-1][0])


def listing() -> list[dict]:
    """``GET /v1/models``'s ``data``: OpenAI's model objects plus Hearth's own fields."""
    device, capacity = device_memory()
    rows = []
    for item in CATALOG:
        fit = fit_of(item, capacity)
        rows.append(
            {
                "id": item.id,
                "object": "model",
                "created": CREATED,
                "owned_by": "hearth",
                "kind": item.kind.value,
                "title": item.title,
                "demo": item.demo,
                "fit": {"verdict": fit.verdict, "tier": fit.tier, "device": device},
            }
        )
    return rows


def require_model(model: object, kind: ModelKind) -> str:
    """The catalog id of a ``kind`` model, or a 404 in OpenAI's shape."""
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required: one of the ids GET /v1/models lists", param="model")
    for item in CATALOG:
        if item.id == model:
            if item.kind is not kind:
                raise ApiError(
                    400,
                    f"'{model}' is a {item.kind.value} model; this endpoint needs a {kind.value} model",
                    param="model",
                    code="model_not_supported",
                )
            return model
    raise missing_model(model)


def default_model(kind: ModelKind) -> str:
    return next(item.id for item in CATALOG if item.kind is kind)
