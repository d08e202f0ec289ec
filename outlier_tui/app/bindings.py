"""The app's key bindings: the one list the footer, the keymap and the command palette read.

Each binding's description is its title in the palette and its label in the footer
(keep the shown ones short: the footer must fit 80 columns), its tooltip the palette's
help line. Every binding has an id, so the user's keymap
(keymap.py) can remap any of them.
"""

from __future__ import annotations

from textual.binding import Binding, BindingType

from outlier_tui.app.prompt_input import PromptInput
from outlier_tui.app.screens import ChatListScreen, ConfirmDialog, InputDialog, KeysScreen, TextDialog

DIALOGS = (ChatListScreen, InputDialog, TextDialog, ConfirmDialog, KeysScreen)  # their keys are remappable too
COPY_KEYS = 9  # alt+1 … alt+9 copy code block 1 … 9 of the last answer

# One binding per command; the palette lists each of them.
COMMAND_BINDINGS = [
    Binding("ctrl+q", "quit", "Quit", id="quit", priority=True, tooltip="Leave Outlier (chats are saved)"),
    Binding("f1", "show_keys", "Keys", id="help", tooltip="Every key and what it does (Esc closes)"),
    Binding("escape", "cancel_answer", "Stop", id="cancel", tooltip="Stop the answer: what was generated is kept"),
    Binding("ctrl+n", "new_chat", "New chat", id="new_chat", tooltip="Start an empty conversation"),
    Binding("ctrl+o", "chats", "Chats", id="chats", tooltip="List, open, rename or delete saved chats"),
    Binding(
        "ctrl+g",
        "copy_answer",
        "Copy",
        id="copy_answer",
        show=False,  # the footer's 80 columns go to F1 (Keys), which lists this one
        tooltip="Copy the last answer (OSC 52, works over SSH)",
    ),
    Binding(
        "ctrl+f",
        "copy_code",
        "Copy last code block",
        id="copy_code",
        show=False,
        tooltip="From the last answer, to the clipboard (OSC 52)",
    ),
    Binding(
        "ctrl+r",
        "rename_chat",
        "Rename chat",
        id="rename_chat",
        show=False,
        tooltip="Give the current chat a new title",
    ),
    Binding(
        "ctrl+s",
        "export_chat",
        "Export chat to Markdown",
        id="export_chat",
        show=False,
        tooltip="Write the current chat to a .md file",
    ),
    Binding(
        "ctrl+t",
        "system_prompt",
        "Edit system prompt",
        id="system_prompt",
        show=False,
        tooltip="The current chat's system prompt",
    ),
    Binding(
        "ctrl+l",
        "load_model",
        "Load model folder…",
        id="load_model",
        show=False,
        tooltip="Load another mlx-community MoE model folder",
    ),
    Binding(
        "f2",
        "toggle_heatmap",
        "Toggle expert heatmap",
        id="toggle_heatmap",
        show=False,
        tooltip="Show or hide the expert-cache pane",
    ),
    Binding(
        "f3",
        "toggle_memory",
        "Toggle memory pane",
        id="toggle_memory",
        show=False,
        tooltip="Show or hide the memory pane",
    ),
    Binding(
        "f4",
        "focus_chat",
        "Focus chat log",
        id="focus_chat",
        show=False,
        tooltip="Scroll the conversation with the keyboard",
    ),
    Binding("f5", "retry", "Regenerate the last answer", id="retry", show=False, tooltip="Replace it with a new one"),
    Binding(
        "f8",
        "toggle_thinking",
        "Show or fold the thinking",
        id="toggle_thinking",
        show=False,
        tooltip="Of the last answer of a reasoning model",
    ),
    Binding(
        "f10",
        "search",
        "Search all chats",
        id="search",
        show=False,
        tooltip="Full-text search; Enter opens the chat at the match",
    ),
]
# Copy code block N: the palette lists the blocks the last answer has instead.
COPY_CODE_BINDINGS = [
    Binding(f"alt+{n}", f"copy_code({n})", f"Copy code {n}", id=f"copy_code_{n}", show=False)
    for n in range(1, COPY_KEYS + 1)
]
APP_BINDINGS: list[BindingType] = [*COMMAND_BINDINGS, *COPY_CODE_BINDINGS]

# Commands with no key of their own (a binding needs one): palette entries only.
# (title, help, action)
UNBOUND_COMMANDS = (
    ("Delete chat", "Delete the current chat and its messages", "delete_chat"),
    (
        "Edit the last message",
        "Put it back in the box (↑ in an empty box); Enter replaces it and its answer",
        "edit_last",
    ),
    ("Focus message box", "Back to typing", "focus_prompt"),
    (
        "Trim the oldest turn",
        "Drop the first question and its answer (a chat longer than the model's context)",
        "trim_oldest",
    ),
)

# Actions that change the current chat: not while a dialog is open.
CHAT_ACTIONS = {
    "new_chat",
    "chats",
    "rename_chat",
    "delete_chat",
    "export_chat",
    "system_prompt",
    "load_model",
    "copy_answer",
    "copy_code",
    "retry",
    "edit_last",
    "search",
    "set_thinking",
    "trim_oldest",
}


def binding_ids() -> set[str]:
    """Every binding id a keymap may remap: the app's, the message box's and the dialogs'."""
    lists: list[list[BindingType]] = [APP_BINDINGS, PromptInput.BINDINGS, *(s.BINDINGS for s in DIALOGS)]
    return {b.id for bindings in lists for b in bindings if isinstance(b, Binding) and b.id}


def key_label(key: str) -> str:
    """A Textual key name as the README writes keys: "ctrl+l" -> "Ctrl+L", "f1" -> "F1"."""
    names = {"pageup": "PgUp", "pagedown": "PgDn", "escape": "Esc"}
    return "+".join(names.get(part, part.capitalize() if len(part) > 1 else part.upper()) for part in key.split("+"))


def default_key(binding_id: str) -> str:
    """The first key bound to `binding_id` before any keymap ('' if none)."""
    for binding in [*APP_BINDINGS, *PromptInput.BINDINGS]:
        if isinstance(binding, Binding) and binding.id == binding_id:
            return binding.key.split(",")[0]
    return ""
