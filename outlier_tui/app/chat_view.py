"""The chat log: user and assistant turns, with answers streaming in as Markdown."""

from __future__ import annotations

import asyncio

from markdown_it import MarkdownIt
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownBlock
from textual.worker import Worker, WorkerCancelled, WorkerFailed

from engine.api import GenerationStats

FLUSH_INTERVAL = 0.1  # seconds: a streaming answer is re-rendered at most ~10 times a second
MAX_FLUSH_INTERVAL = 1.0  # ... and at least once a second
RENDER_SHARE = 0.25  # at most this share of the UI's time goes to re-rendering the answer
MAX_FLUSH_CHARS = 600  # appended per frame at most; more waits for the next frame

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
    """An answer: Markdown body, streamed while generating, plus a status note.

    Streaming uses Textual's incremental Markdown.append (what MarkdownStream
    does), paced: tokens can arrive hundreds of times a second and each
    append of a long answer costs a re-layout of the chat, so fragments are
    batched and appended at most every FLUSH_INTERVAL, and less often when the
    measured cost of one append (parse, mount, layout, paint) is high, keeping
    rendering under RENDER_SHARE of the UI's time so keys stay responsive.
    """

    def __init__(self, text: str = "", status: str = "complete", note: str = "") -> None:
        super().__init__(classes="message")
        self.text = text
        self.status = status
        self._note_text = note
        self._pending = ""
        self._streaming = False
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._pacer: Worker | None = None
        self.flushes = 0

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
        """Begin streaming: fragments written from now on are appended by the pacer."""
        self.status = "partial"
        self._streaming = True
        self._set_note("generating…", "working")
        self._pacer = self.run_worker(self._pace(), name="answer pacer", group="pacer",
                                      exclusive=True)

    def write(self, fragment: str) -> None:
        """Add a fragment of the answer (cheap: the pacer puts it on screen)."""
        self.text += fragment
        if self._streaming:
            self._pending += fragment
            self._wake.set()

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        while self._streaming or self._pending:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            # A bounded slice per frame: one huge append would freeze the UI.
            cut = self._pending.rfind("\n", 0, MAX_FLUSH_CHARS) + 1 \
                if len(self._pending) > MAX_FLUSH_CHARS else len(self._pending)
            cut = cut or MAX_FLUSH_CHARS
            chunk, self._pending = self._pending[:cut], self._pending[cut:]
            started = loop.time()
            await self.body.append(chunk)
            frame = loop.create_future()
            self.call_after_refresh(lambda: frame.done() or frame.set_result(None))
            await frame
            self.flushes += 1
            cost = loop.time() - started
            pause = min(MAX_FLUSH_INTERVAL, max(FLUSH_INTERVAL, cost / RENDER_SHARE)) - cost
            if pause > 0 and self._streaming:
                self._wake.clear()
                try:  # finish() wakes us at once
                    await asyncio.wait_for(self._stopped.wait(), pause)
                except asyncio.TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)  # let keys through between slices

    async def finish(self, status: str, note: str = "") -> None:
        """Stop streaming and make the body match a full render of the final text.

        The status note changes at once; text still pending (the model can
        outrun the screen) is then appended in slices, so keys stay responsive.
        """
        self._streaming = False
        self._stopped.set()
        self._wake.set()
        self.status = status
        self._note_text = note
        self._show_note()
        if self._pacer is not None:
            try:
                await self._pacer.wait()
            except (WorkerCancelled, WorkerFailed):
                pass
            self._pacer = None
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
