"""Modal dialogs: chat list, one-line input (rename, model path, export path),
multi-line text (system prompt), yes/no confirmation, search over all chats and
the keys (F1)."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from outlier_tui.store import Chat, SearchHit


class InputDialog(ModalScreen[str | None]):
    """Ask for one line of text; dismisses with the text, or None on Esc."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog_cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = "", hint: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self._title, self._value, self._placeholder, self._hint = title, value, placeholder, hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Input(self._value, placeholder=self._placeholder, id="dialog-input")
            yield Label(self._hint or "Enter confirms · Esc cancels", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        self.dismiss(value or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextDialog(ModalScreen[str | None]):
    """Edit multi-line text (the system prompt); Ctrl+S saves, Esc cancels."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="dialog_cancel"),
        Binding("ctrl+s", "save", "Save", id="dialog_save", priority=True),
    ]

    def __init__(self, title: str, text: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self._title, self._text = title, text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog tall"):
            yield Label(self._title, classes="dialog-title")
            yield TextArea(self._text, id="dialog-text", soft_wrap=True, tab_behavior="focus")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (Ctrl+S)", variant="primary", id="save")
                yield Button("Cancel (Esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        self.dismiss(self.query_one("#dialog-text", TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question; y/Enter confirms, n/Esc declines."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="dialog_yes"),
        Binding("n,escape", "answer(False)", "No", id="dialog_no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__(classes="dialog-screen")
        self._question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._question, classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


class ChatListScreen(ModalScreen[tuple[str, int] | None]):
    """Pick a chat. Dismisses with (verb, chat id): verb is open, rename or delete;
    ("new", 0) for a new chat; None on Esc."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="list_close"),
        Binding("r", "pick('rename')", "Rename", id="list_rename"),
        Binding("d,delete", "pick('delete')", "Delete", id="list_delete"),
        Binding("n", "new", "New", id="list_new"),
    ]

    def __init__(self, chats: list[Chat], current_id: int | None) -> None:
        super().__init__(classes="dialog-screen")
        self._chats = chats
        self._current = current_id

    def compose(self) -> ComposeResult:
        options = [
            Option(
                Content.assemble(
                    ("● " if c.id == self._current else "  ", "$accent"),
                    c.title,
                    ("  " + _when(c.updated_at), "$text-muted"),
                ),
                id=str(c.id),
            )
            for c in self._chats
        ]
        with Vertical(classes="dialog tall"):
            yield Label(f"Chats ({len(self._chats)})", classes="dialog-title")
            yield OptionList(*options, id="chat-options")
            yield Label("Enter open · r rename · d delete · n new · Esc close", classes="dialog-hint")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        ids = [c.id for c in self._chats]
        if self._current in ids:
            options.highlighted = ids.index(self._current)
        options.focus()

    def _highlighted_id(self) -> int | None:
        options = self.query_one(OptionList)
        if options.highlighted is None:
            return None
        return int(options.get_option_at_index(options.highlighted).id or 0)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(("open", int(event.option.id or 0)))

    def action_pick(self, verb: str) -> None:
        chat_id = self._highlighted_id()
        if chat_id is not None:
            self.dismiss((verb, chat_id))

    def action_new(self) -> None:
        self.dismiss(("new", 0))

    def action_close(self) -> None:
        self.dismiss(None)


class SearchScreen(ModalScreen[tuple[int, int] | None]):
    """Search every chat as you type (SQLite FTS5). Enter on a hit dismisses with
    (chat id, message id); Esc with None. `search(words)` returns SearchHits."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="search_close"),
        Binding("down", "to_results", "Results", id="search_results", show=False),
    ]

    def __init__(self, search: Callable[[str], list[SearchHit]], query: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self._search = search
        self._query = query

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog tall"):
            yield Label("Search all chats", classes="dialog-title")
            yield Input(self._query, placeholder="words…", id="search-input")
            yield OptionList(id="search-hits")
            yield Label(
                "Type to search · ↓ to the hits · Enter opens the chat there · Esc closes", classes="dialog-hint"
            )

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        if self._query:
            self._show(self._query)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._show(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        hits = self.query_one(OptionList)
        if hits.option_count:
            hits.highlighted = hits.highlighted or 0
            self._open(hits.get_option_at_index(hits.highlighted).id)

    def _show(self, words: str) -> None:
        hits = self.query_one(OptionList)
        hits.clear_options()
        for hit in self._search(words):
            who = "You" if hit.role == "user" else "Assistant"
            hits.add_option(
                Option(
                    Content.assemble(
                        (hit.chat_title, "bold"),
                        (f"  {who}: ", "$text-muted"),
                        *((text, "bold reverse $accent") if matched else text for text, matched in hit.parts()),
                    ),
                    id=f"{hit.chat_id}:{hit.message_id}",
                )
            )
        if hits.option_count:
            hits.highlighted = 0

    def action_to_results(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._open(event.option.id)

    def _open(self, option_id: str | None) -> None:
        chat_id, message_id = (int(part) for part in (option_id or "0:0").split(":"))
        self.dismiss((chat_id, message_id))

    def action_close(self) -> None:
        self.dismiss(None)


class KeysScreen(ModalScreen[None]):
    """Every key of the app and what it does (F1), as the user's keymap has them.
    `rows` is (keys, action) from the bindings, so it cannot drift from them."""

    BINDINGS = [Binding("escape,f1,q", "close", "Close", id="keys_close")]

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        super().__init__(classes="dialog-screen")
        self._rows = rows

    def compose(self) -> ComposeResult:
        width = max((len(key) for key, _ in self._rows), default=0) + 2
        lines = [Content.assemble((key.ljust(width), "bold $accent"), action) for key, action in self._rows]
        with Vertical(classes="dialog tall"):
            yield Label("Keys", classes="dialog-title")
            with VerticalScroll(id="keys-list"):
                yield Static(Content("\n").join(lines))
            yield Label("Ctrl+P: every action by name · keymap.toml remaps keys · Esc", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)
