"""Undoable edits of the brush document (QUndoStack commands)."""

from __future__ import annotations

from PySide6.QtGui import QImage, QUndoCommand

from app.brush_editor.state import BrushDocumentState, EditorLayer

MERGEABLE_ID = 4201


class PaintStroke(QUndoCommand):
    """A brush, eraser or box stroke on one layer's mask (already painted when pushed)."""

    def __init__(
        self, state: BrushDocumentState, layer_id: str, before: QImage, after: QImage, label: str
    ) -> None:
        super().__init__(label)
        self.state, self.layer_id = state, layer_id
        self.before, self.after = before.copy(), after.copy()

    def redo(self) -> None:
        self.state.set_mask(self.layer_id, self.after)

    def undo(self) -> None:
        self.state.set_mask(self.layer_id, self.before)


class AddLayer(QUndoCommand):
    def __init__(self, state: BrushDocumentState, layer: EditorLayer, index: int) -> None:
        super().__init__(f"add {layer.name}")
        self.state, self.layer, self.index = state, layer, index

    def redo(self) -> None:
        self.state.insert_layer(self.layer.copy(), self.index)

    def undo(self) -> None:
        self.state.remove_layer(self.layer.id)


class DeleteLayer(QUndoCommand):
    def __init__(self, state: BrushDocumentState, layer_id: str) -> None:
        super().__init__("delete layer")
        self.state, self.layer_id = state, layer_id
        self.layer: EditorLayer | None = None
        self.index = 0

    def redo(self) -> None:
        layer, self.index = self.state.remove_layer(self.layer_id)
        self.layer = layer.copy()

    def undo(self) -> None:
        self.state.insert_layer(self.layer.copy(), self.index)


class MoveLayer(QUndoCommand):
    def __init__(self, state: BrushDocumentState, layer_id: str, index: int) -> None:
        super().__init__("reorder layers")
        self.state, self.layer_id, self.index = state, layer_id, index
        self.old_index = state.index_of(layer_id)

    def redo(self) -> None:
        self.state.move_layer(self.layer_id, self.index)

    def undo(self) -> None:
        self.state.move_layer(self.layer_id, self.old_index)


class SetLayerProperty(QUndoCommand):
    """Change one property of one layer; consecutive changes of the same property merge into one undo."""

    def __init__(self, state: BrushDocumentState, layer_id: str, name: str, value) -> None:
        super().__init__(f"change {name.replace('_', ' ')}")
        self.state, self.layer_id, self.name = state, layer_id, name
        self.old, self.new = getattr(state.layer(layer_id), name), value

    def redo(self) -> None:
        self.state.set_property(self.layer_id, self.name, self.new)

    def undo(self) -> None:
        self.state.set_property(self.layer_id, self.name, self.old)

    def id(self) -> int:
        return MERGEABLE_ID

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt's name
        if not isinstance(other, SetLayerProperty) or (other.layer_id, other.name) != (
            self.layer_id,
            self.name,
        ):
            return False
        if self.name in ("visible", "seed"):
            return False  # each toggle and each new seed is its own step
        self.new = other.new
        return True


class SetSolo(QUndoCommand):
    def __init__(self, state: BrushDocumentState, layer_id: str | None) -> None:
        super().__init__("solo layer" if layer_id else "unsolo")
        self.state, self.layer_id, self.old = state, layer_id, state.solo_id

    def redo(self) -> None:
        self.state.set_solo(self.layer_id)

    def undo(self) -> None:
        self.state.set_solo(self.old)
