"""The Gallery tab: every output Hearth made, newest first, with thumbnails, search and filters.

From an item: open it, show it in its folder, delete it (with its sidecar, after asking), "Use
these settings" (fills the form of the tab that made it, model included) and "Edit with
brushes". The listing and the thumbnails are made on a background thread (``GalleryWorker``)
and shown as they arrive; thumbnails are cached on disk and only made for rows on screen.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QModelIndex, QSize, QSortFilterProxyModel, Qt, QUrl, Signal
from PySide6.QtGui import QAction, QColor, QDesktopServices, QImageReader, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QStyledItemDelegate,
    QVBoxLayout,
    QWidget,
)

from app.gallery_index import KINDS, GalleryEntry, delete_output, folders, matches
from app.gallery_thumbs import SIDE
from app.gallery_worker import GalleryWorker
from workers.errors import BadInput
from workers.generation_info import describe
from workers.protocol import Output

EMPTY_TEXT = (
    "No outputs yet.\n\nWhat you make in the Image, Video and Music tabs appears here, "
    "newest first; drop a PNG, MP4, WAV or FLAC on the window to reuse its settings."
)
KIND_LABELS = {"": "All kinds", "image": "Images", "video": "Videos", "music": "Music"}
PIXMAP_CACHE = 600
"""Thumbnails kept decoded (160 px: about 100 KB each); the disk cache holds the rest."""
PREVIEW_SIDE = 320
MAX_PREVIEW_PIXELS = 16 * 1024 * 1024
EntryRole = Qt.ItemDataRole.UserRole + 1


class GalleryItems(QAbstractListModel):
    """The listed outputs for the view; asks the worker for a row's thumbnail when it is drawn."""

    def __init__(self, worker: GalleryWorker, parent=None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.entries: list[GalleryEntry] = []
        self.keys: set[str] = set()
        self.pixmaps: OrderedDict[str, QPixmap] = OrderedDict()
        self.problems: dict[str, str] = {}
        self.placeholders = {kind: _placeholder(kind) for kind in KINDS}

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self.entries)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.entries):
            return None
        entry = self.entries[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return _caption(entry)
        if role == Qt.ItemDataRole.DecorationRole:
            return self._pixmap(entry)
        if role == Qt.ItemDataRole.ToolTipRole:
            why = self.problems.get(entry.key) or entry.problem
            return "\n".join(t for t in (entry.prompt, entry.model, entry.path.name, why) if t)
        if role == EntryRole:
            return entry
        return None

    def _pixmap(self, entry: GalleryEntry) -> QPixmap:
        pixmap = self.pixmaps.get(entry.key)
        if pixmap is not None:
            self.pixmaps.move_to_end(entry.key)
            return pixmap
        return self.placeholders.get(entry.kind, self.placeholders["image"])

    def ensure_thumbnail(self, entry: GalleryEntry) -> None:
        """Asked by the delegate as it paints a row: only rows on screen get their thumbnail made
        (the view also reads rows it merely measures, such as the first of each batch)."""
        if entry.key not in self.pixmaps and entry.key not in self.problems:
            self.worker.request_thumbnail(entry)

    def set_thumbnail(self, key: str, png: bytes, problem: str) -> None:
        pixmap = QPixmap()
        if png and pixmap.loadFromData(png, "PNG"):
            self.pixmaps[key] = pixmap
            while len(self.pixmaps) > PIXMAP_CACHE:
                self.pixmaps.popitem(last=False)
        else:
            self.problems[key] = problem or "no thumbnail"
        row = self.row_of(key)
        if row >= 0:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole, Qt.ItemDataRole.ToolTipRole])

    def row_of(self, key: str) -> int:
        if key not in self.keys:
            return -1
        return next((i for i, entry in enumerate(self.entries) if entry.key == key), -1)

    def reset(self) -> None:
        self.beginResetModel()
        self.entries, self.keys = [], set()
        self.endResetModel()

    def append(self, entries: list[GalleryEntry]) -> None:
        entries = [entry for entry in entries if entry.key not in self.keys]
        if entries:
            self.beginInsertRows(QModelIndex(), len(self.entries), len(self.entries) + len(entries) - 1)
            self.entries.extend(entries)
            self.keys.update(entry.key for entry in entries)
            self.endInsertRows()

    def put_first(self, entry: GalleryEntry) -> None:
        """A new output (or a render written again under its name) goes to the top."""
        self.remove(entry.key)
        self.beginInsertRows(QModelIndex(), 0, 0)
        self.entries.insert(0, entry)
        self.keys.add(entry.key)
        self.endInsertRows()

    def remove(self, key: str) -> None:
        row = self.row_of(key)
        self.pixmaps.pop(key, None)
        self.problems.pop(key, None)
        self.worker.forget_thumbnail(key)
        if row >= 0:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self.entries[row]
            self.keys.discard(key)
            self.endRemoveRows()


class GalleryDelegate(QStyledItemDelegate):
    """Draws rows as usual; a row drawn without its thumbnail asks for it."""

    def __init__(self, items: GalleryItems, parent=None) -> None:
        super().__init__(parent)
        self.items = items

    def paint(self, painter, option, index) -> None:
        entry = index.data(EntryRole)
        if entry is not None:
            self.items.ensure_thumbnail(entry)
        super().paint(painter, option, index)


class GalleryFilter(QSortFilterProxyModel):
    """The search box and the kind and model filters (``gallery_index.matches``)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.text = ""
        self.kind = ""
        self.model_id = ""

    def set_filters(self, text: str, kind: str, model: str) -> None:
        self.beginFilterChange()
        self.text, self.kind, self.model_id = text, kind, model
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, row: int, parent) -> bool:  # noqa: N802 - Qt override
        entries = self.sourceModel().entries
        return row < len(entries) and matches(entries[row], self.text, self.kind, self.model_id)


class GalleryTab(QWidget):
    """Browse, search and reuse outputs. Emits what the window does with an item."""

    use_settings_requested = Signal(object)
    """A ``GenerationInfo``: fill the form of the tab that made it."""
    edit_requested = Signal(object)
    """A ``GalleryEntry`` (an image): open it as a brush project base."""
    deleted = Signal(str)

    def __init__(self, bridge=None, roots=folders, thumbnails_dir: Path | None = None, parent=None) -> None:
        super().__init__(parent)
        self.roots = roots
        self.worker = GalleryWorker(roots, thumbnails_dir, self)
        self.items = GalleryItems(self.worker, self)
        self.filter = GalleryFilter(self)
        self.filter.setSourceModel(self.items)
        self.generation = 0
        self.scanning = False
        self.scanned = False
        self._build()
        self._bind()
        if bridge is not None:
            bridge.event.connect(self.on_event)
        self._show_selection()

    # -- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        self.search = QLineEdit(placeholderText="Search prompts and file names")
        self.search.setClearButtonEnabled(True)
        self.kind_box = QComboBox()
        for kind, label in KIND_LABELS.items():
            self.kind_box.addItem(label, kind)
        self.model_box = QComboBox()
        self.model_box.addItem("All models", "")
        self.model_box.setMinimumContentsLength(16)
        self.refresh_button = QPushButton("Refresh")
        self.count_label = QLabel()
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        for widget in (self.kind_box, self.model_box, self.refresh_button, self.count_label):
            top.addWidget(widget)
        self.view = QListView()
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)  # only rows on screen are asked for their data
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setIconSize(QSize(SIDE, SIDE))
        self.view.setGridSize(QSize(SIDE + 24, SIDE + 44))
        self.view.setWordWrap(True)
        self.view.setSpacing(4)
        self.view.setModel(self.filter)
        self.view.setItemDelegate(GalleryDelegate(self.items, self.view))
        self.empty = QLabel(EMPTY_TEXT, alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.empty.setStyleSheet("color: #6b7280; font-size: 14px; padding: 40px;")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.view)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.stack)
        splitter.addWidget(self._build_details())
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)

    def _build_details(self) -> QWidget:
        panel = QWidget()
        panel.setMinimumWidth(PREVIEW_SIDE)
        panel.setMaximumWidth(PREVIEW_SIDE + 120)
        self.preview = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(PREVIEW_SIDE, PREVIEW_SIDE * 3 // 4)
        self.preview.setStyleSheet("QLabel { background: #1f2937; color: #9ca3af; border-radius: 4px; }")
        self.details = QPlainTextEdit(readOnly=True)
        self.details.setPlaceholderText("Pick an item to see how it was made.")
        self.use_button = QPushButton("Use these settings")
        self.use_button.setToolTip(
            "Fill the form of the tab that made it (model, seed and all) to make it again"
        )
        self.edit_button = QPushButton("Edit with brushes")
        self.edit_button.setToolTip(
            "Open the image in the brush editor (an image from elsewhere enters through DDIM inversion)"
        )
        self.open_button = QPushButton("Open")
        self.reveal_button = QPushButton("Show in folder")
        self.delete_button = QPushButton("Delete…")
        rows = [
            (self.use_button, self.edit_button),
            (self.open_button, self.reveal_button, self.delete_button),
        ]
        layout = QVBoxLayout(panel)
        layout.addWidget(self.preview)
        layout.addWidget(self.details, 1)
        for row in rows:
            line = QHBoxLayout()
            for button in row:
                line.addWidget(button)
            layout.addLayout(line)
        return panel

    def _bind(self) -> None:
        self.worker.batch.connect(self._on_batch)
        self.worker.scan_done.connect(self._on_scan_done)
        self.worker.entry.connect(self._on_entry)
        self.worker.thumbnail_ready.connect(self._on_thumbnail)
        self.search.textChanged.connect(self._apply_filters)
        self.kind_box.currentIndexChanged.connect(self._apply_filters)
        self.model_box.currentIndexChanged.connect(self._apply_filters)
        self.refresh_button.clicked.connect(self.refresh)
        self.view.selectionModel().currentChanged.connect(self._show_selection)
        self.view.doubleClicked.connect(lambda _index: self.open_current())
        self.use_button.clicked.connect(self.use_current)
        self.edit_button.clicked.connect(self.edit_current)
        self.open_button.clicked.connect(self.open_current)
        self.reveal_button.clicked.connect(self.reveal_current)
        self.delete_button.clicked.connect(self.delete_current)
        self._add_item_actions()

    def _add_item_actions(self) -> None:
        """The buttons' actions on a right click of an item too; Delete and Enter on the keyboard."""
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        for text, slot, key in (
            ("Use these settings", self.use_current, ""),
            ("Edit with brushes", self.edit_current, ""),
            ("Open", self.open_current, "Return"),
            ("Show in folder", self.reveal_current, ""),
            ("Delete…", self.delete_current, "Delete"),
        ):
            action = QAction(text, self.view)
            action.triggered.connect(lambda _checked=False, slot=slot: slot())
            if key:
                action.setShortcut(QKeySequence(key))
                action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
            self.view.addAction(action)

    # -- listing --------------------------------------------------------------------------

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self.scanned and not self.scanning:
            self.refresh()  # the first look: nothing is read before the tab is opened

    def refresh(self) -> None:
        """List the output folders again, on the background thread; rows arrive in batches."""
        self.items.reset()
        self.scanning = True
        self.generation = self.worker.rescan()
        self._update_count()

    def on_event(self, event) -> None:
        if (
            isinstance(event, Output)
            and (self.scanned or self.scanning)
            and _inside(Path(event.path), self.roots())
        ):
            self.worker.read_entry(Path(event.path))

    def _on_batch(self, generation: int, entries: list) -> None:
        if generation == self.generation:
            self.items.append(entries)
            self._add_models(entries)
            self._update_count()

    def _on_scan_done(self, generation: int) -> None:
        if generation == self.generation:
            self.scanning, self.scanned = False, True
            self._update_count()

    def _on_entry(self, entry: GalleryEntry) -> None:
        if entry.path.exists():
            self.items.put_first(entry)
            self._add_models([entry])
            self._update_count()

    def _on_thumbnail(self, key: str, png: bytes, problem: str) -> None:
        self.items.set_thumbnail(key, png, problem)
        current = self.current_entry()
        if current is not None and current.key == key:
            self._show_preview(current)

    def _add_models(self, entries) -> None:
        known = {self.model_box.itemData(i) for i in range(self.model_box.count())}
        for model in sorted({e.model for e in entries if e.model and e.model not in known}):
            self.model_box.addItem(model if len(model) <= 40 else "…" + model[-39:], model)

    def _apply_filters(self) -> None:
        self.filter.set_filters(self.search.text(), self.kind_box.currentData(), self.model_box.currentData())
        self._update_count()

    def _update_count(self) -> None:
        total, shown = self.items.rowCount(), self.filter.rowCount()
        busy = " (reading…)" if self.scanning else ""
        self.count_label.setText(f"{shown} of {total}{busy}" if shown != total else f"{total} outputs{busy}")
        self.stack.setCurrentWidget(self.view if total else self.empty)
        if not total:
            self.empty.setText("Reading the outputs folder…" if self.scanning else EMPTY_TEXT)

    def entries(self) -> list[GalleryEntry]:
        """What the view shows now, in order (after search and filters)."""
        return [self.filter.index(r, 0).data(EntryRole) for r in range(self.filter.rowCount())]

    def select(self, entry: GalleryEntry) -> None:
        row = self.items.row_of(entry.key)
        if row >= 0:
            self.view.setCurrentIndex(self.filter.mapFromSource(self.items.index(row)))

    def current_entry(self) -> GalleryEntry | None:
        index = self.view.currentIndex()
        return index.data(EntryRole) if index.isValid() else None

    # -- the selected item ------------------------------------------------------------------

    def _show_selection(self, *_args) -> None:
        entry = self.current_entry()
        for button in (self.open_button, self.reveal_button, self.delete_button):
            button.setEnabled(entry is not None)
        self.use_button.setEnabled(entry is not None and entry.info is not None)
        self.edit_button.setEnabled(entry is not None and entry.kind == "image")
        if entry is None:
            self.preview.clear()
            self.preview.setText("")
            self.details.clear()
            return
        self._show_preview(entry)
        self.details.setPlainText(_details(entry))

    def _show_preview(self, entry: GalleryEntry) -> None:
        pixmap = _preview_image(entry.path) if entry.kind == "image" else None
        if pixmap is None or pixmap.isNull():
            pixmap = self.items.pixmaps.get(entry.key)
        if pixmap is None or pixmap.isNull():
            self.preview.setText(self.items.problems.get(entry.key, "…"))
            return
        target = QSize(PREVIEW_SIDE, PREVIEW_SIDE * 3 // 4)
        small = pixmap.width() < target.width() and pixmap.height() < target.height()
        mode = (
            Qt.TransformationMode.FastTransformation if small else Qt.TransformationMode.SmoothTransformation
        )
        self.preview.setPixmap(pixmap.scaled(target, Qt.AspectRatioMode.KeepAspectRatio, mode))

    def use_current(self) -> None:
        entry = self.current_entry()
        if entry is not None and entry.info is not None:
            self.use_settings_requested.emit(entry.info)

    def edit_current(self) -> None:
        entry = self.current_entry()
        if entry is not None and entry.kind == "image":
            self.edit_requested.emit(entry)

    def open_current(self) -> None:
        entry = self.current_entry()
        if entry is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(entry.path)))

    def reveal_current(self) -> None:
        """Opens the containing folder: selecting the file in it has no portable Qt call."""
        entry = self.current_entry()
        if entry is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(entry.path.parent)))

    def delete_current(self) -> bool:
        entry = self.current_entry()
        if entry is None or not self.confirm_delete(entry):
            return False
        try:
            delete_output(entry.path)
        except BadInput as exc:
            QMessageBox.warning(self, "Delete", str(exc))
            return False
        self.items.remove(entry.key)
        self._update_count()
        self._show_selection()
        self.deleted.emit(entry.key)
        return True

    def confirm_delete(self, entry: GalleryEntry) -> bool:
        sidecar = " and its settings file" if Path(str(entry.path) + ".json").exists() else ""
        answer = QMessageBox.question(
            self,
            "Delete output",
            f"Delete {entry.path.name}{sidecar}? This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def shutdown(self) -> None:
        """Stop the background thread (the window calls it when it closes)."""
        self.worker.shutdown()


def _inside(path: Path, roots: list[Path]) -> bool:
    try:
        parent = path.resolve().parent
        return any(parent == Path(root).resolve() for root in roots)
    except OSError:
        return False


def _caption(entry: GalleryEntry) -> str:
    text = " ".join(entry.prompt.split()) or entry.path.name
    return text if len(text) <= 48 else text[:47] + "…"


def _details(entry: GalleryEntry) -> str:
    if entry.info is None:
        return f"{entry.path}\n\nNo settings to reuse: {entry.problem}"
    lines = [f"{label}: {value}" for label, value in describe(entry.info)]
    return "\n".join([str(entry.path), "", *lines])


def _preview_image(path: Path) -> QPixmap | None:
    """The image itself, decoded at preview size where the format allows it; None past the pixel limit."""
    reader = QImageReader(str(path))
    size = reader.size()
    if not size.isValid() or size.width() * size.height() > MAX_PREVIEW_PIXELS:
        return None
    if size.width() > PREVIEW_SIDE * 2 or size.height() > PREVIEW_SIDE * 2:
        reader.setScaledSize(
            size.scaled(PREVIEW_SIDE * 2, PREVIEW_SIDE * 2, Qt.AspectRatioMode.KeepAspectRatio)
        )
    image = reader.read()
    return None if image.isNull() else QPixmap.fromImage(image)


def _placeholder(kind: str) -> QPixmap:
    pixmap = QPixmap(SIDE, SIDE)
    pixmap.fill(QColor("#374151"))
    painter = QPainter(pixmap)
    painter.setPen(QColor("#9ca3af"))
    painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, {"music": "♪", "video": "▶"}.get(kind, "…"))
    painter.end()
    return pixmap
