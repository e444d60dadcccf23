"""The Layered Diffusion Brushes editor (Qt only; the heavy lifting happens in the image worker)."""

from app.brush_editor.editor import BrushEditor

__all__ = ["BrushEditor"]
