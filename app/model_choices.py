"""The registry's models as the tabs' model pickers list them: each with its fit verdict.

A picker keeps its catalog items; the registry's runnable models of its kind are appended after
them (tagged, so a refresh replaces only those), titled with the verdict against the current
budget. The item's data is the model's spec (a path or hub id), which the tab submits.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox

from models.fit import Budget, Verdict, judge
from models.registry import BUILTIN

REGISTRY_ROLE = Qt.ItemDataRole.UserRole + 41
"""Marks a picker item as the registry's (the catalog's have none)."""
VERDICT_WORDS = {
    Verdict.fits: "fits",
    Verdict.fits_reduced: "fits reduced",
    Verdict.cpu_only: "CPU only",
    Verdict.wont_fit: "won't fit",
}


@dataclass(frozen=True, slots=True)
class Choice:
    spec: str
    title: str
    tooltip: str


def verdict_text(model, budget: Budget) -> str:
    """``fits``, ``fits reduced (offloaded, ~4x slower)``, ``missing``, ``-`` for a part."""
    if model.missing:
        return "missing"
    fit = judge(model.identity.tiers, budget)
    if fit is None:
        return "-"
    words = VERDICT_WORDS[fit.verdict]
    if fit.verdict in (Verdict.fits_reduced, Verdict.cpu_only):
        # Slower than on a GPU: said only where there is one to compare with, and not for a tiny model.
        compared = fit.slowdown >= 1.5 and budget.device_bytes > 0
        slower = f", ~{fit.slowdown:g}x slower" if compared else ""
        return f"{words} ({fit.tier}{slower})"
    return words


def registry_choices(kind: str, budget: Budget, models=None) -> list[Choice]:
    """The registry's usable models of ``kind`` (runnable, file present), verdicts included."""
    if models is None:
        from models.registry import ModelRegistry

        with ModelRegistry() as registry:
            models = registry.models()
    return [
        Choice(
            spec=model.spec,
            title=f"{model.name} · {verdict_text(model, budget)}",
            tooltip=f"{model.identity.family or model.identity.kind.value} at {model.location} ({model.source})",
        )
        for model in models
        if model.identity.kind.value == kind
        and model.identity.runnable
        and not model.problem
        and model.source != BUILTIN  # the pickers list the catalog's own entries already
    ]


def refresh_picker(combo: QComboBox, choices: list[Choice]) -> None:
    """Replace the picker's registry items with ``choices``; what the user picked or typed stays."""
    text = combo.currentText()
    data = combo.currentData()
    combo.blockSignals(True)
    try:
        for index in reversed(range(combo.count())):
            if combo.itemData(index, REGISTRY_ROLE):
                combo.removeItem(index)
        at = _insert_at(combo)
        for offset, choice in enumerate(choices):
            combo.insertItem(at + offset, choice.title, choice.spec)
            combo.setItemData(at + offset, True, REGISTRY_ROLE)
            combo.setItemData(at + offset, choice.tooltip, Qt.ItemDataRole.ToolTipRole)
        index = combo.findData(data) if data else -1
        if index >= 0:
            combo.setCurrentIndex(index)
        elif combo.isEditable():
            combo.setEditText(text)
    finally:
        combo.blockSignals(False)


def select_spec(combo: QComboBox, spec: str) -> None:
    """Make ``spec`` the picker's model: its item when listed, else the typed text."""
    index = combo.findData(spec)
    if index >= 0:
        combo.setCurrentIndex(index)
    elif combo.isEditable():
        combo.setEditText(spec)


def _insert_at(combo: QComboBox) -> int:
    """After the catalog's items, before a trailing action item (the chat picker's "Add model ...")."""
    last = combo.count() - 1
    if last >= 0 and isinstance(combo.itemData(last), str) and combo.itemData(last).startswith("__"):
        return last
    return combo.count()
