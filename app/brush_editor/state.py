"""View-state of the brush editor: the document (base, layers, masks) and the painting tool.

Widgets bind to these objects' ``*_changed`` signals and never talk to each other directly.
Masks are 8-bit grayscale QImages at image resolution (0 = untouched, 255 = regenerate), the
same convention as ``BrushLayer.mask_png`` and the ``.hearth`` file.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, Signal
from PySide6.QtGui import QImage

from workers.brushes.project_io import BrushProject
from workers.protocol import BRUSH_MERGE_STEPS, BrushLayer
from workers.schema import default_of

LAYER_FIELDS = ("name", "prompt", "strength", "regen_step", "seed", "visible", "opacity", "feather")
RENDER_FIELDS = ("prompt", "strength", "regen_step", "seed", "visible", "opacity", "feather")


@dataclass
class EditorLayer:
    """One layer as the editor holds it; ``mask`` is a Grayscale8 QImage the size of the image."""

    id: str
    mask: QImage
    name: str = ""
    prompt: str = default_of(BrushLayer, "prompt")
    strength: float = default_of(BrushLayer, "strength")
    regen_step: int = default_of(BrushLayer, "regen_step")
    seed: int = default_of(BrushLayer, "seed")
    visible: bool = True
    opacity: float = default_of(BrushLayer, "opacity")
    feather: float = default_of(BrushLayer, "feather")

    def copy(self) -> EditorLayer:
        return replace(self, mask=self.mask.copy())

    def is_empty(self) -> bool:
        return not any(bytes(self.mask.constBits()))

    def to_message(self, visible: bool | None = None) -> BrushLayer:
        fields = {key: getattr(self, key) for key in LAYER_FIELDS}
        if visible is not None:
            fields["visible"] = visible
        return BrushLayer(id=self.id, mask_png=image_png(self.mask), **fields)

    @classmethod
    def from_message(cls, message: BrushLayer) -> EditorLayer:
        mask = QImage.fromData(message.mask_png).convertToFormat(QImage.Format.Format_Grayscale8)
        return cls(id=message.id, mask=mask, **{key: getattr(message, key) for key in LAYER_FIELDS})


class BrushDocumentState(QObject):
    """The open brush project: session parameters, base and composite images, layers bottom to top."""

    layers_changed = Signal()
    selection_changed = Signal()
    image_changed = Signal()
    preview_changed = Signal()
    status_changed = Signal(str)
    project_changed = Signal()
    content_changed = Signal(bool)
    """Something worth saving changed; the flag says whether the composite must be re-rendered."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.params: dict | None = None
        self.base_image = QImage()
        self.composite: QImage | None = None
        self.preview: QImage | None = None
        self.trajectory = b""
        self.project_path: Path | None = None
        self.layers: list[EditorLayer] = []
        self.selected_id: str | None = None
        self.solo_id: str | None = None

    # -- queries --------------------------------------------------------------------------

    @property
    def has_session(self) -> bool:
        return self.params is not None

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.params["width"]), int(self.params["height"])) if self.params else (0, 0)

    @property
    def steps(self) -> int:
        return int(self.params["steps"]) if self.params else 0

    @property
    def max_regen_step(self) -> int:
        return max(0, self.steps - 1 - BRUSH_MERGE_STEPS)

    def layer(self, layer_id: str | None) -> EditorLayer | None:
        return next((item for item in self.layers if item.id == layer_id), None)

    def index_of(self, layer_id: str) -> int:
        return next(i for i, item in enumerate(self.layers) if item.id == layer_id)

    @property
    def selected(self) -> EditorLayer | None:
        return self.layer(self.selected_id)

    def displayed_image(self) -> QImage:
        return self.composite if self.composite is not None else self.base_image

    def render_layers(self) -> tuple[BrushLayer, ...]:
        """What a render sends: painted layers, solo applied, bottom to top."""
        return tuple(
            item.to_message(visible=self.effective_visible(item))
            for item in self.layers
            if not item.is_empty()
        )

    def effective_visible(self, layer: EditorLayer) -> bool:
        return layer.visible and (self.solo_id is None or self.solo_id == layer.id)

    # -- edits (called by undo commands) --------------------------------------------------

    def new_layer(self) -> EditorLayer:
        width, height = self.size
        mask = QImage(width, height, QImage.Format.Format_Grayscale8)
        mask.fill(0)
        number = len(self.layers) + 1
        return EditorLayer(
            id=uuid.uuid4().hex[:12],
            mask=mask,
            name=f"Layer {number}",
            regen_step=min(self.max_regen_step, self.steps // 2),
            seed=number,
        )

    def insert_layer(self, layer: EditorLayer, index: int) -> None:
        self.layers.insert(index, layer)
        self.select(layer.id)
        self._changed(render=not layer.is_empty())

    def remove_layer(self, layer_id: str) -> tuple[EditorLayer, int]:
        index = self.index_of(layer_id)
        layer = self.layers.pop(index)
        if self.solo_id == layer_id:
            self.solo_id = None
        if self.selected_id == layer_id:
            self.select(self.layers[min(index, len(self.layers) - 1)].id if self.layers else None)
        self._changed(render=True)
        return layer, index

    def move_layer(self, layer_id: str, index: int) -> None:
        layer = self.layers.pop(self.index_of(layer_id))
        self.layers.insert(index, layer)
        self._changed(render=True)

    def set_property(self, layer_id: str, name: str, value) -> None:
        setattr(self.layer(layer_id), name, value)
        self._changed(render=name in RENDER_FIELDS)

    def set_mask(self, layer_id: str, mask: QImage) -> None:
        self.layer(layer_id).mask = mask.copy()
        self._changed(render=True)

    def set_solo(self, layer_id: str | None) -> None:
        self.solo_id = layer_id
        self._changed(render=True)

    def select(self, layer_id: str | None) -> None:
        if layer_id != self.selected_id:
            self.selected_id = layer_id
            self.selection_changed.emit()

    def _changed(self, render: bool) -> None:
        self.layers_changed.emit()
        self.content_changed.emit(render)

    # -- images from the worker -----------------------------------------------------------

    def set_composite(self, image: QImage | None) -> None:
        self.composite, self.preview = image, None
        self.image_changed.emit()
        self.preview_changed.emit()

    def set_preview(self, image: QImage | None) -> None:
        self.preview = image
        self.preview_changed.emit()

    def set_status(self, message: str) -> None:
        self.status_changed.emit(message)

    # -- projects -------------------------------------------------------------------------

    def load_project(self, project: BrushProject, path: Path | None) -> None:
        self.params = dict(project.params)
        self.base_image = QImage.fromData(project.base_png).convertToFormat(QImage.Format.Format_RGB32)
        self.trajectory = project.trajectory
        self.layers = [EditorLayer.from_message(message) for message in project.layers]
        self.project_path = path
        self.solo_id = None
        self.selected_id = self.layers[-1].id if self.layers else None
        rendered = QImage.fromData(project.render_png) if project.render_png else None
        self.composite = rendered if rendered is not None and not rendered.isNull() else None
        self.preview = None
        self.project_changed.emit()
        self.layers_changed.emit()
        self.selection_changed.emit()
        self.image_changed.emit()

    def to_project(self) -> BrushProject:
        layers = [item.to_message() for item in self.layers]
        render = image_png(self.composite) if self.composite is not None else None
        return BrushProject(
            params=dict(self.params),
            base_png=image_png(self.base_image),
            trajectory=self.trajectory,
            layers=layers,
            render_png=render,
        )


class ToolState(QObject):
    """The painting tool: brush, eraser or box; its size and edge softness (image pixels)."""

    tool_changed = Signal()
    TOOLS = ("brush", "eraser", "box")

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tool = "brush"
        self.size = 12.0
        self.feather = 0.5
        """0 = hard edge, 1 = the whole radius fades out."""

    def set_tool(self, tool: str) -> None:
        if tool not in self.TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        self.tool = tool
        self.tool_changed.emit()

    def set_size(self, size: float) -> None:
        self.size = max(1.0, float(size))
        self.tool_changed.emit()

    def set_feather(self, feather: float) -> None:
        self.feather = min(1.0, max(0.0, float(feather)))
        self.tool_changed.emit()


def image_png(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())
