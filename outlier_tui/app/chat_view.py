"""The chat log: user and assistant turns, with answers streaming in as Markdown."""

from __future__ import annotations

from textual.containers import Vertical, VerticalScroll
from textual.timer import Timer
from textual.content import Content
from textual.widgets import Markdown, Static
from markdown_it import MarkdownIt
from textual.widgets.markdown import MarkdownBlock, MarkdownStream

from engine.api import GenerationStats

FLUSH_INTERVAL = 0.1  # seconds: the answer's Markdown is re-rendered at most ~10 times a second

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


def block_starts(markdown: str) -> list[int]:
    """First source line of each top-level block, as Textual's Markdown parser sees them."""
    tokens = MarkdownIt("gfm-like").parse(markdown)
    return [t.map[0] for t in tokens if t.map is not None and t.level == 0 and t.nesting >= 0]


def streamed_blocks(body: Markdown) -> list[int]:
    """First source line of each block widget the stream produced."""
    return [child.source_range[0] for child in body.children if isinstance(child, MarkdownBlock)]


class UserMessage(Static):
    """What the user sent, verbatim (no Markdown), with a role line."""

    def __init__(self, text: str) -> None:
        super().__init__(Content.assemble(("You\n", "bold $accent"), text), classes="message")
        self.text = text


class AssistantMessage(Vertical):
    """An answer: Markdown body, streamed while generating, plus a status note."""

    def __init__(self, text: str = "", status: str = "complete", note: str = "",
                 flush_interval: float = FLUSH_INTERVAL) -> None:
        super().__init__(classes="message")
        self.text = text
        self.status = status
        self._note_text = note
        self._stream: MarkdownStream | None = None
        self._pending = ""
        self._flush_interval = flush_interval
        self._flush_timer: Timer | None = None
        self._streaming = False

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
        """Begin streaming: fragments go to Textual's MarkdownStream, batched by a timer."""
        self.status = "partial"
        self._streaming = True
        self._set_note("generating…", "working")

    def write(self, fragment: str) -> None:
        """Append a fragment of the answer; it reaches the screen within flush_interval.

        Tokens can arrive hundreds of times a second; re-rendering Markdown that
        often would starve key handling, so fragments are batched by a timer.
        """
        self.text += fragment
        if not self._streaming:
            return
        self._pending += fragment
        if self._flush_timer is None:
            self._flush_timer = self.set_timer(self._flush_interval, self._flush)

    async def _flush(self) -> None:
        self._flush_timer = None
        pending, self._pending = self._pending, ""
        if not pending or not self._streaming:
            return
        if self._stream is None:
            # Created here, not in start_stream: its task must get to run before
            # stop() cancels it, or the cancellation escapes into our caller.
            self._stream = Markdown.get_stream(self.body)
        await self._stream.write(pending)

    async def finish(self, status: str, note: str = "") -> None:
        """Stop streaming and render the whole text once, so the final Markdown is exact."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        self._pending = ""
        self._streaming = False
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.status = status
        self._note_text = note
        self._show_note()
        await self._render_final()

    async def _render_final(self) -> None:
        """Make the body exactly what a full render of the final text gives.

        The whole text is re-parsed; the streamed widgets are kept when their
        blocks match that parse (a full re-render of a long answer costs
        seconds of UI time), otherwise the text is rendered again in full.
        """
        body = self.body
        if body.source != self.text:
            if self.text.startswith(body.source):
                await body.append(self.text[len(body.source):])
            else:
                await body.update(self.text)
                return
        if streamed_blocks(body) != block_starts(self.text):
            await body.update(self.text)

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
