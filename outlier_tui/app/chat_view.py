"""The chat log: user and assistant turns, with answers streaming in as Markdown."""

from __future__ import annotations

from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from engine.api import GenerationStats

STATUS_NOTES = {
    "cancelled": "stopped: the text above is what was generated",
    "partial": "interrupted: Outlier stopped before this answer finished",
}


def stats_line(stats: GenerationStats) -> str:
    """One dim line under a finished answer: tokens, speed, cache hits, bytes read."""
    lookups = stats.expert_hits + stats.expert_misses
    parts = [f"{stats.generation_tokens} tokens", f"{stats.generation_tps:.1f} tok/s"]
    if lookups:
        parts.append(f"{stats.expert_hits / lookups:.0%} expert hits")
    parts.append(f"first token {stats.time_to_first_token:.2f}s")
    return " · ".join(parts)


class UserMessage(Static):
    """What the user sent, verbatim (no Markdown), with a role line."""

    def __init__(self, text: str) -> None:
        super().__init__(Content.assemble(("You\n", "bold $accent"), text), classes="message")
        self.text = text


class AssistantMessage(Vertical):
    """An answer: Markdown body, streamed while generating, plus a status note."""

    def __init__(self, text: str = "", status: str = "complete", note: str = "") -> None:
        super().__init__(classes="message")
        self.text = text
        self.status = status
        self._note_text = note
        self._stream: MarkdownStream | None = None

    def compose(self):
        yield Static(Content.styled("Assistant", "bold $primary"), classes="role")
        yield Markdown(self.text, classes="body")
        yield Static("", classes="note")

    def on_mount(self) -> None:
        self._show_note()

    @property
    def body(self) -> Markdown:
        """The Markdown widget holding the answer."""
        return self.query_one(".body", Markdown)

    def start_stream(self) -> None:
        """Begin streaming: fragments are batched by Textual's MarkdownStream."""
        self.status = "partial"
        self._stream = Markdown.get_stream(self.body)
        self._set_note("generating…", "working")

    async def write(self, fragment: str) -> None:
        """Append a fragment of the answer."""
        self.text += fragment
        if self._stream is not None:
            await self._stream.write(fragment)

    async def finish(self, status: str, note: str = "") -> None:
        """Stop streaming and render the whole text once, so the final Markdown is exact."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.status = status
        self._note_text = note
        await self.body.update(self.text)
        self._show_note()

    def _show_note(self) -> None:
        if self.status == "error":
            self._set_note(self._note_text or "failed", "error")
        elif self.status in STATUS_NOTES:
            self._set_note(STATUS_NOTES[self.status], "warn")
        else:
            self._set_note(self._note_text, "stats")

    def _set_note(self, text: str, kind: str) -> None:
        note = self.query_one(".note", Static)
        note.update(text)
        note.set_class(not text, "-hidden")
        for name in ("working", "error", "warn", "stats"):
            note.set_class(name == kind, f"-{name}")


class ChatLog(VerticalScroll):
    """The scrolling list of turns; stays at the bottom until the user scrolls up."""

    def on_mount(self) -> None:
        self.anchor()

    async def show(self, widgets: list[UserMessage | AssistantMessage]) -> None:
        """Replace the log with a whole conversation (switching chats)."""
        await self.remove_children()
        if widgets:
            await self.mount_all(widgets)
        self.scroll_end(animate=False, immediate=True)
        self.anchor()

    async def add(self, widget: UserMessage | AssistantMessage) -> None:
        """Append one turn and follow it (re-anchors: sending means looking at the answer)."""
        await self.mount(widget)
        self.anchor()

    def last_answer(self) -> AssistantMessage | None:
        """The newest assistant turn on screen, if any."""
        answers = self.query(AssistantMessage)
        return answers.last() if answers else None
