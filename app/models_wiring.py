"""The Models tab wired into the window: the live budget, the tabs' model pickers, "Use in its tab"."""

from __future__ import annotations

from app.chat_tab import ChatTab
from app.model_choices import refresh_picker, registry_choices, select_spec
from app.music_tab import MusicTab
from app.video_tab import VideoTab


def attach(tab, window) -> None:
    """Wire the Models tab into the window: the live budget from the Memory panel's state, the
    other tabs' model pickers listing the registry's models with verdicts, and "Use in its tab"."""
    state = tab.state
    window.memory_state.snapshot_changed.connect(state.follow_ledger)
    pickers = {
        "image": window.image_tab.model_box,
        "video": window.findChild(VideoTab).model_picker,
        "music": window.findChild(MusicTab).model_picker,
    }
    chat = window.findChild(ChatTab)

    def refresh() -> None:
        for kind, picker in pickers.items():
            refresh_picker(picker, registry_choices(kind, state.budget, state.models))
        refresh_picker(chat.model_picker, registry_choices("chat", state.budget, state.models))

    def use(kind: str, spec: str) -> None:
        if kind == "chat":
            select_spec(chat.model_picker, spec)
            window.tabs.setCurrentWidget(chat)
        else:
            select_spec(pickers[kind], spec)
            target = {
                "image": window.image_tabs,
                "video": window.findChild(VideoTab),
                "music": window.findChild(MusicTab),
            }
            if kind == "image":
                window.image_tab.use_model_settings()
                window.image_tabs.setCurrentWidget(window.image_tab)
            window.tabs.setCurrentWidget(target[kind])

    state.models_changed.connect(refresh)
    state.budget_changed.connect(refresh)
    chat.state.models_changed.connect(refresh)  # after the chat tab rebuilt its own list
    tab.use_requested.connect(use)
    refresh()
