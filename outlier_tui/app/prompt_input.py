"""The message box: a multi-line TextArea where Enter sends and Ctrl+J adds a newline."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

PLACEHOLDER = "Message… (Enter: send · Ctrl+J: new line)"


class PromptInput(TextArea):
    """TextArea whose Enter submits; priority bindings so TextArea's own Enter never runs."""

    BINDINGS = [
        Binding("enter", "submit", "Send", id="send", priority=True),
        Binding("shift+enter,ctrl+j", "newline", "Newline", id="newline", priority=True),
        Binding("pageup", "app.scroll_chat(-1)", "Scroll up", id="scroll_up",
                show=False, priority=True),
        Binding("pagedown", "app.scroll_chat(1)", "Scroll down", id="scroll_down",
                show=False, priority=True),
    ]

    class Submitted(Message):
        """The user pressed the send key; `text` is the box's content."""

        def __init__(self, prompt: "PromptInput", text: str) -> None:
            super().__init__()
            self.prompt = prompt
            self.text = text

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False,
                         tab_behavior="focus", placeholder=PLACEHOLDER, compact=True)

    class _SubmitRequested(Message):
        """Queued behind the key presses already sent to this widget."""

    def action_submit(self) -> None:
        # Priority bindings run as the app receives the key, before this widget
        # has processed the characters typed just ahead of it (a burst over SSH,
        # a paste): read the text only once those are in.
        self.post_message(self._SubmitRequested())

    def _on_prompt_input__submit_requested(self, _: "PromptInput._SubmitRequested") -> None:
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.insert("\n")
