"""The Chat tab: conversations on the left, the conversation in the middle, settings on the right.

Laid out the way LM Studio, Jan or GPT4All users expect: Enter sends, Shift+Enter starts a new
line, Stop keeps what was written so far, Regenerate and Edit work on the last turn, and each
answer ends with its speed (tokens/s) and time to first token. All logic lives in ``ChatState``.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.chat_state import DEFAULT_SYSTEM_PROMPT, ChatState
from app.form_binding import add_generate_shortcut, compact_picker, request_from_form, spin_for
from models.catalog import HOW_TO_ADD_MODELS
from models.chat_memory import QUANT_TITLES, QUANTS
from workers.conversations import ConversationStore
from workers.protocol import ChatMessage, ChatRequest
from workers.schema import default_of

ADD_MODEL = "__add_model__"
RENDER_DELAY_MS = 30  # coalesce token-by-token updates into a few repaints per second


class ChatInput(QPlainTextEdit):
    """The message box: Enter sends, Shift+Enter inserts a new line."""

    submitted = Signal()

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
            else:
                self.submitted.emit()
            return
        super().keyPressEvent(event)


class ChatTab(QWidget):
    """The Chat sub-app, bound to a ``ChatState`` that talks to the bridge."""

    def __init__(self, bridge, store: ConversationStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = ChatState(bridge, store)
        self._render_timer = QTimer(self, singleShot=True, interval=RENDER_DELAY_MS)
        self._render_timer.timeout.connect(self._render)
        self._rendered_at = 0.0
        self._last_model = default_of(ChatRequest, "model")
        """The picker's model before "Add model ...": where a cancelled dialog goes back to."""
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self._build_conversations())
        splitter.addWidget(self._build_conversation())
        splitter.addWidget(self._build_settings())
        splitter.setSizes([220, 640, 280])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)
        self._bind()
        self._refresh_conversations()
        self._refresh_models()
        self._render()
        add_generate_shortcut(self, self.send)

    # -- layout ---------------------------------------------------------------------------

    def _build_conversations(self) -> QWidget:
        panel = QWidget(self)
        layout = QVBoxLayout(panel)
        self.search_box = QLineEdit(panel, placeholderText="Search conversations")
        self.conversation_list = QListWidget(panel)
        buttons = QHBoxLayout()
        self.new_button = QPushButton("New", panel, toolTip="Start a new conversation")
        self.rename_button = QPushButton("Rename", panel)
        self.delete_button = QPushButton("Delete", panel)
        self.export_button = QPushButton("Export", panel, toolTip="Save as Markdown or JSON")
        for button in (self.new_button, self.rename_button, self.delete_button, self.export_button):
            buttons.addWidget(button)
        layout.addWidget(self.search_box)
        layout.addWidget(self.conversation_list)
        layout.addLayout(buttons)
        return panel

    def _build_conversation(self) -> QWidget:
        panel = QWidget(self)
        layout = QVBoxLayout(panel)
        self.view = QTextBrowser(panel, openExternalLinks=True)
        # On its own wrapped line: the speed line arrives with the answer's end, and beside the
        # buttons its width widened the window past the screen (1440 -> 1684 px) at that moment.
        self.metrics_label = QLabel(panel, wordWrap=True)
        self.status_label = QLabel(panel, wordWrap=True)
        self.input = ChatInput(panel, placeholderText="Message (Enter to send, Shift+Enter for a new line)")
        self.input.setFixedHeight(90)
        buttons = QHBoxLayout()
        self.send_button = QPushButton("Send", panel)
        self.stop_button = QPushButton("Stop", panel, enabled=False)
        self.regenerate_button = QPushButton("Regenerate", panel)
        self.edit_button = QPushButton("Edit last", panel, toolTip="Take your last message back to edit it")
        buttons.addStretch(1)
        for button in (self.edit_button, self.regenerate_button, self.stop_button, self.send_button):
            buttons.addWidget(button)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.metrics_label)
        layout.addWidget(self.status_label)
        layout.addWidget(self.input)
        layout.addLayout(buttons)
        return panel

    def _build_settings(self) -> QWidget:
        panel = QWidget(self)
        outer = QVBoxLayout(panel)
        form = QFormLayout()
        outer.addLayout(form)
        outer.addStretch(1)
        self.model_picker = compact_picker(QComboBox(panel, toolTip=HOW_TO_ADD_MODELS))
        self.quant_picker = compact_picker(QComboBox(panel))
        for quant in QUANTS:
            self.quant_picker.addItem(QUANT_TITLES[quant], quant)
        self.memory_label = QLabel(panel, wordWrap=True)
        self.system_prompt = QPlainTextEdit(DEFAULT_SYSTEM_PROMPT, panel)
        self.system_prompt.setFixedHeight(80)
        self.temperature = spin_for(ChatRequest, "temperature", panel)
        self.top_p = spin_for(ChatRequest, "top_p", panel)
        self.top_k = spin_for(ChatRequest, "top_k", panel)
        self.max_tokens = spin_for(ChatRequest, "max_new_tokens", panel)
        self.repetition_penalty = spin_for(ChatRequest, "repetition_penalty", panel)
        form.addRow("Model", self.model_picker)
        form.addRow("Quantization", self.quant_picker)
        form.addRow(self.memory_label)
        form.addRow("System prompt", self.system_prompt)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Top-k (0: off)", self.top_k)
        form.addRow("Max tokens", self.max_tokens)
        form.addRow("Repetition penalty", self.repetition_penalty)
        return panel

    # -- binding --------------------------------------------------------------------------

    def _bind(self) -> None:
        state = self.state
        state.conversations_changed.connect(self._refresh_conversations)
        state.current_changed.connect(self._refresh_conversations)
        state.messages_changed.connect(self._schedule_render)
        state.busy_changed.connect(self._on_busy)
        state.status_changed.connect(self.status_label.setText)
        state.metrics_changed.connect(self.metrics_label.setText)
        state.models_changed.connect(self._refresh_models)
        self.search_box.textChanged.connect(state.set_search)
        self.conversation_list.currentItemChanged.connect(self._on_conversation_picked)
        self.new_button.clicked.connect(state.new_conversation)
        self.rename_button.clicked.connect(self._rename)
        self.delete_button.clicked.connect(self._delete)
        self.export_button.clicked.connect(self._export)
        self.input.submitted.connect(self.send)
        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(state.stop)
        self.regenerate_button.clicked.connect(lambda: state.regenerate(self.form_request()))
        self.edit_button.clicked.connect(self._edit_last)
        self.model_picker.activated.connect(self._on_model_picked)
        # The memory estimate follows the model and quantization however they change (a click, a
        # restored form, the Models tab's "Use"); "Add model ..." opens its dialog only on a click.
        self.model_picker.currentIndexChanged.connect(self._refresh_memory)
        self.quant_picker.currentIndexChanged.connect(self._refresh_memory)

    def form_fields(self) -> dict[str, QWidget]:
        """The settings remembered between launches (``Settings.forms["chat"]``); the message
        being typed and the conversation are not: conversations live in their own store."""
        return {
            "model": self.model_picker,
            "quant": self.quant_picker,
            "system_prompt": self.system_prompt,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_new_tokens": self.max_tokens,
            "repetition_penalty": self.repetition_penalty,
        }

    def form_request(self) -> ChatRequest:
        """The form as the next answer's request: its model and sampling, and the system prompt
        as the first message (the state adds the conversation after it)."""
        system = self.system_prompt.toPlainText().strip()
        messages = (ChatMessage(role="system", content=system),) if system else ()
        return request_from_form(ChatRequest, self.form_fields(), messages=messages)

    # -- actions --------------------------------------------------------------------------

    def send(self) -> None:
        if self.state.send(self.input.toPlainText(), self.form_request()):
            self.input.clear()

    def _edit_last(self) -> None:
        text = self.state.edit_last()
        if text:
            self.input.setPlainText(text)
            self.input.setFocus()

    def _on_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)
        for button in (self.send_button, self.regenerate_button, self.edit_button):
            button.setEnabled(not busy)

    def _on_conversation_picked(self, item: QListWidgetItem | None) -> None:
        if item is not None:
            self.state.select(item.data(Qt.ItemDataRole.UserRole))

    def _rename(self) -> None:
        if not self.state.current_id:
            return
        current = self.state.store.get(self.state.current_id).title
        title, ok = QInputDialog.getText(self, "Rename conversation", "Title", text=current)
        if ok:
            self.state.rename(self.state.current_id, title)

    def _delete(self) -> None:
        if not self.state.current_id:
            return
        answer = QMessageBox.question(
            self, "Delete conversation", "Delete this conversation? This cannot be undone."
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.state.delete(self.state.current_id)

    def _export(self) -> None:
        if not self.state.current_id:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export conversation", "conversation.md", "Markdown (*.md);;JSON (*.json)"
        )
        if path:
            self.state.export(self.state.current_id, path)

    def _on_model_picked(self, index: int) -> None:
        if self.model_picker.itemData(index) != ADD_MODEL:
            return
        spec, ok = QInputDialog.getText(self, "Add model", HOW_TO_ADD_MODELS)
        self._refresh_models(self.state.add_model(spec) if ok else "")

    # -- refresh --------------------------------------------------------------------------

    def _refresh_conversations(self) -> None:
        self.conversation_list.blockSignals(True)
        self.conversation_list.clear()
        for conv in self.state.conversations():
            item = QListWidgetItem(conv.title)
            item.setData(Qt.ItemDataRole.UserRole, conv.id)
            self.conversation_list.addItem(item)
            if conv.id == self.state.current_id:
                self.conversation_list.setCurrentItem(item)
        self.conversation_list.blockSignals(False)

    def _refresh_models(self, pick: str = "") -> None:
        """The picker's choices again, keeping its model (or making ``pick`` its model)."""
        current = pick or self.model_picker.currentData()
        if current in (None, ADD_MODEL):  # the dialog was cancelled: back to the model before it
            current = self._last_model
        self.model_picker.blockSignals(True)
        self.model_picker.clear()
        for spec, title in self.state.model_choices():
            self.model_picker.addItem(title, spec)
        self.model_picker.addItem("Add model ...", ADD_MODEL)
        self.model_picker.setCurrentIndex(max(self.model_picker.findData(current), 0))
        self.model_picker.blockSignals(False)
        self._refresh_memory()

    def _refresh_memory(self) -> None:
        model = self.model_picker.currentData()
        if model != ADD_MODEL:
            self._last_model = model
            self.memory_label.setText(
                self.state.memory_estimate(model or "", self.quant_picker.currentData())
            )

    def _schedule_render(self) -> None:
        """Repaint now if the last repaint is ``RENDER_DELAY_MS`` old (an answer's first token
        shows at once), else when that much has passed. Never a restart of a running timer:
        tokens arriving faster than the delay (35 tok/s is 29 ms apart) would put every repaint
        off to the answer's end, and the answer would appear at once instead of streaming."""
        if self._render_timer.isActive():
            return
        since = time.monotonic() - self._rendered_at
        if since >= RENDER_DELAY_MS / 1000:
            self._render()
        else:
            self._render_timer.start(max(1, round(RENDER_DELAY_MS - since * 1000)))

    def _render(self) -> None:
        self._rendered_at = time.monotonic()
        bar = self.view.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        self.view.setMarkdown(self.state.transcript_markdown() or "*Start a conversation below.*")
        if at_bottom:
            bar.setValue(bar.maximum())
