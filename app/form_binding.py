"""Form widgets configured from the job schema: limits, default, step and tooltip come from the
request field's ``param()`` declaration (``workers/schema.py``), never from numbers typed here."""

from __future__ import annotations

from PySide6.QtWidgets import QDoubleSpinBox, QSpinBox, QWidget

from workers.schema import ParamInfo, params

QT_INT_MAX = 2**31 - 1
"""A QSpinBox holds a C int: seeds above this are reachable from the CLI and the API only."""


def spin_for(
    request_cls: type, name: str, parent: QWidget | None = None, *, value=None, suffix: str = ""
) -> QSpinBox | QDoubleSpinBox:
    """A spin box for one numeric request field, starting at ``value`` or the field's default."""
    info = params(request_cls)[name]
    box = QSpinBox(parent) if info.type is int else QDoubleSpinBox(parent)
    low, high = _limits(info)
    if isinstance(box, QDoubleSpinBox):
        box.setDecimals(_decimals(info.spec.step))
    box.setRange(low, high)
    box.setSingleStep(info.spec.step or 1)
    if info.spec.zero_means:
        box.setSpecialValueText(info.spec.zero_means)  # shown at the minimum, 0
    if suffix:
        box.setSuffix(suffix)
    box.setValue(info.default if value is None else value)
    box.setToolTip(tooltip(info))
    return box


def tooltip(info: ParamInfo) -> str:
    span = info.describe_range()
    return f"{info.spec.help[:1].upper()}{info.spec.help[1:]}" + (f" ({span})." if span else ".")


def _limits(info: ParamInfo) -> tuple[float, float]:
    low = 0 if info.spec.zero_means else info.spec.low
    high = info.spec.high
    if info.type is int:
        return int(low), int(min(high, QT_INT_MAX))
    return float(low), float(high)


def _decimals(step: float | None) -> int:
    if not step or float(step).is_integer():
        return 1
    return max(1, len(f"{step:g}".split(".")[1]))
