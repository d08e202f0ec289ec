"""The message box: a multi-line TextArea where Enter sends and Ctrl+J adds a newline.

Up on an empty box asks to edit the last message; Tab after `@` completes a
file name (elsewhere it moves the focus, as usual).
"""

from __future__ import annotations

import os

from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea
from textual.widgets.text_area import EditResult

from outlier_tui.core.attachments import complete_path

PLACEHOLDER = "Message… (Enter: send · Ctrl+J: new line · @file attaches · ↑ edits the last)"


class PromptInput(TextArea):
    """TextArea whose Enter submits; priority bindings so TextArea's own Enter never runs."""

    BINDINGS = [
        Binding("enter", "submit", "Send", id="send", priority=True),
        # Ctrl+J first: the footer shows the first key, and it works in every terminal;
        # most terminals (and tmux) send Shift+Enter as plain Enter.
        Binding("ctrl+j,shift+enter", "newline", "Newline", id="newline", priority=True),
        Binding("tab", "complete", "Complete @file", id="complete", show=False, priority=True),
        Binding("pageup", "app.scroll_chat(-1)", "Scroll up", id="scroll_up", show=False, priority=True),
        Binding("pagedown", "app.scroll_chat(1)", "Scroll down", id="scroll_down", show=False, priority=True),
    ]

    class Submitted(Message):
        """The user pressed the send key; `text` is the box's content."""

        def __init__(self, prompt: PromptInput, text: str) -> None:
            super().__init__()
            self.prompt = prompt
            self.text = text

    class EditLastRequested(Message):
        """Up on an empty box: the user wants to edit the last message."""

    class Completions(Message):
        """Tab after `@` found several files; `candidates` are their names."""

        def __init__(self, candidates: list[str]) -> None:
            super().__init__()
            self.candidates = candidates

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus", placeholder=PLACEHOLDER, compact=True
        )
        self.editing = False  # holds the last message being edited

    class _SubmitRequested(Message):
        """Queued behind the key presses already sent to this widget."""

    def action_submit(self) -> None:
        # Priority bindings run as the app receives the key, before this widget
        # has processed the characters typed just ahead of it (a burst over SSH,
        # a paste): read the text only once those are in.
        self.post_message(self._SubmitRequested())

    def _on_prompt_input__submit_requested(self, _: PromptInput._SubmitRequested) -> None:
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.insert("\n")

    def action_cursor_up(self, select: bool = False) -> None:
        if not self.text and not select:
            self.post_message(self.EditLastRequested())
            return
        super().action_cursor_up(select)

    def start_edit(self, text: str) -> None:
        """Put the last message in the box; sending it replaces the original."""
        self.text = text
        self.editing = True
        self.move_cursor(self.document.end)

    def clear(self) -> EditResult:
        result = super().clear()
        self.editing = False
        return result

    def _word_before_cursor(self) -> str:
        row, column = self.cursor_location
        line = self.document.get_line(row)[:column]
        return line.split()[-1] if line and not line[-1].isspace() else ""

    def action_complete(self) -> None:
        word = self._word_before_cursor()
        if not word.startswith("@"):
            self.screen.focus_next()
            return
        partial = word[1:]
        candidates = complete_path(partial)
        if not candidates:
            self.app.bell()
            return
        common = os.path.commonprefix(candidates)
        if len(common) > len(partial):
            self.insert(common[len(partial) :])
        if len(candidates) > 1:
            self.post_message(self.Completions(candidates))
