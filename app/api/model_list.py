"""Which models the API serves, and whether each fits this machine.

A client names a model by its id in ``GET /v1/models``: the catalog's models and every model the
user linked with ``hearth models`` (the registry), each with its kind and Hearth's fit verdict.
Paths are never accepted over HTTP: a program talking to the API must not make Hearth open files
of its choosing; it can only pick among the models the user registered.
"""

from __future__ import annotations

from app.api.errors import ApiError, missing_model
from models.budget import machine_budget
from models.catalog import ModelKind
from models.fit import judge
from models.registry import ModelRegistry, RegisteredModel, builtin_models

CREATED = 1_767_225_600
"""``created`` of every listed model (2026-01-01): OpenAI's shape needs a time, the registry has none."""
SERVED_KINDS = {kind.value for kind in ModelKind}


def served_models() -> list[RegisteredModel]:
    """The catalog's models, then the registry's runnable models of a kind the API serves."""
    with ModelRegistry() as registry:
        linked = registry.models()
    usable = [
        m for m in linked if m.identity.kind.value in SERVED_KINDS and m.identity.runnable and not m.problem
    ]
    return builtin_models() + usable


def listing() -> list[dict]:
    """``GET /v1/models``'s ``data``: OpenAI's model objects plus Hearth's own fields."""
    budget = machine_budget()
    rows = []
    for model in served_models():
        fit = judge(model.identity.tiers, budget)
        rows.append(
            {
                "id": model.id,
                "object": "model",
                "created": CREATED,
                "owned_by": "hearth",
                "kind": model.identity.kind.value,
                "title": model.name,
                "family": model.identity.family,
                "fit": None
                if fit is None
                else {"verdict": fit.verdict.value, "tier": fit.tier, "needs_bytes": fit.needs_bytes},
            }
        )
    return rows


def require_model(model: object, kind: ModelKind) -> str:
    """What the job's ``model`` field takes for the listed model ``model`` of ``kind``, or a 404."""
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required: one of the ids GET /v1/models lists", param="model")
    found = next((m for m in served_models() if m.id == model), None)
    if found is None:
        raise missing_model(model)
    if found.identity.kind.value != kind.value:
        raise ApiError(
            400,
            f"'{model}' is a {found.identity.kind.value} model; this endpoint needs a {kind.value} model",
            param="model",
            code="model_not_supported",
        )
    return found.spec
