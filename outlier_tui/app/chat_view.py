"""The chat log: user and assistant turns, with answers streaming in as Markdown."""

from __future__ import annotations

import asyncio
import contextlib

from markdown_it import MarkdownIt
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Collapsible, Markdown, Static
from textual.widgets.markdown import MarkdownBlock
from textual.worker import Worker, WorkerCancelled, WorkerFailed

from outlier_tui.core.format import STATUS_NOTES

FLUSH_INTERVAL = 0.1  # seconds: a streaming answer is re-rendered at most ~10 times a second
MAX_FLUSH_INTERVAL = 1.0  # ... and at least once a second
RENDER_SHARE = 0.25  # at most this share of the UI's time goes to re-rendering the answer
MAX_FLUSH_CHARS = 600  # appended per frame at most; more waits for the next frame


def block_starts(markdown: str) -> list[int]:
    """First source line of each top-level block, as Textual's Markdown parser sees them."""
    tokens = MarkdownIt("gfm-like").parse(markdown)
    return [t.map[0] for t in tokens if t.map is not None and t.level == 0 and t.nesting >= 0]


def streamed_blocks(body: Markdown) -> list[int]:
    """First source line of each block widget the stream produced."""
    return [child.source_range[0] for child in body.children if isinstance(child, MarkdownBlock)]


THINKING_TITLE = "Thinking…"
THOUGHT_TITLE = "Thinking"


class UserMessage(Static):
    """What the user sent, verbatim (no Markdown), with a role line."""

    def __init__(self, text: str, message_id: int | None = None) -> None:
        super().__init__(Content.assemble(("You\n", "bold $accent"), text), classes="message")
        self.text = text
        self.message_id = message_id


class AssistantMessage(Vertical):
    """An answer: Markdown body, streamed while generating, plus a status note.

    Streaming uses Textual's incremental Markdown.append (what MarkdownStream
    does), paced: tokens can arrive hundreds of times a second and each
    append of a long answer costs a re-layout of the chat, so fragments are
    batched and appended at most every FLUSH_INTERVAL, and less often when the
    measured cost of one append (parse, mount, layout, paint) is high, keeping
    rendering under RENDER_SHARE of the UI's time so keys stay responsive.
    """

    def __init__(
        self,
        text: str = "",
        status: str = "complete",
        note: str = "",
        thinking: str = "",
        message_id: int | None = None,
    ) -> None:
        super().__init__(classes="message")
        self.text = text
        self.thinking = thinking
        self.message_id = message_id
        self.status = status
        self._note_text = note
        self._pending = ""
        self._streaming = False
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._pacer: Worker | None = None
        self._thinking_dirty = False

    def compose(self):
        yield Static(Content.styled("Assistant", "bold $primary"), classes="role")
        with Collapsible(
            title=THOUGHT_TITLE, collapsed=True, classes="thinking" + ("" if self.thinking else " -empty")
        ):
            yield Static(self.thinking, classes="thinking-text", markup=False)
        yield Markdown(self.text, classes="body")
        yield Static("", classes="note")

    @property
    def thinking_block(self) -> Collapsible:
        """The dimmed, collapsible block holding a reasoning model's thinking."""
        return self.query_one(Collapsible)

    def write_thinking(self, fragment: str) -> None:
        """Add thinking; it shows live, expanded, until the answer starts."""
        if not self.thinking:
            block = self.thinking_block
            block.remove_class("-empty")
            block.title = THINKING_TITLE
            block.collapsed = False
        self.thinking += fragment
        self._thinking_dirty = True
        self._wake.set()

    def _answer_started(self) -> None:
        if self.thinking and self.thinking_block.title == THINKING_TITLE:
            self._show_thinking()
            self.thinking_block.title = THOUGHT_TITLE
            self.thinking_block.collapsed = True

    def _show_thinking(self) -> None:
        self._thinking_dirty = False
        self.query_one(".thinking-text", Static).update(self.thinking)

    def toggle_thinking(self) -> bool:
        """Expand or fold the thinking; False if this answer has none."""
        if not self.thinking:
            return False
        self.thinking_block.collapsed = not self.thinking_block.collapsed
        return True

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
        self._pacer = self.run_worker(self._pace(), name="answer pacer", group="pacer", exclusive=True)

    def write(self, fragment: str) -> None:
        """Add a fragment of the answer (cheap: the pacer puts it on screen)."""
        if not self.text:
            self._answer_started()
        self.text += fragment
        if self._streaming:
            self._pending += fragment
            self._wake.set()

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        while self._streaming or self._pending or self._thinking_dirty:
            if self._thinking_dirty:
                self._show_thinking()
            if not self._pending:
                if not self._streaming:
                    break
                self._wake.clear()
                await self._wake.wait()
                continue
            # A bounded slice per frame: one huge append would freeze the UI.
            cut = (
                self._pending.rfind("\n", 0, MAX_FLUSH_CHARS) + 1
                if len(self._pending) > MAX_FLUSH_CHARS
                else len(self._pending)
            )
            cut = cut or MAX_FLUSH_CHARS
            chunk, self._pending = self._pending[:cut], self._pending[cut:]
            started = loop.time()
            await self.body.append(chunk)
            frame = loop.create_future()

            def drawn(frame: asyncio.Future[None] = frame) -> None:
                if not frame.done():
                    frame.set_result(None)

            self.call_after_refresh(drawn)
            await frame
            cost = loop.time() - started
            pause = min(MAX_FLUSH_INTERVAL, max(FLUSH_INTERVAL, cost / RENDER_SHARE)) - cost
            if pause > 0 and self._streaming:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):  # finish() wakes us at once
                    await asyncio.wait_for(self._stopped.wait(), pause)
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
        self._answer_started()
        if self.thinking:
            self._show_thinking()
        if self._pacer is not None:
            with contextlib.suppress(WorkerCancelled, WorkerFailed):
                await self._pacer.wait()
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
                await body.append(self.text[len(body.source) :])
            else:
                await body.update(self.text)
                return
        if streamed_blocks(body) != block_starts(self.text):
            await body.update(self.text)

    def _show_note(self) -> None:
        if self.status == "error":
            self._set_note(self._note_text or STATUS_NOTES["error"], "error")
        elif self.status != "complete" and self.status in STATUS_NOTES:
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

    async def show(self, widgets: list[UserMessage | AssistantMessage], welcome: Content | str = "") -> None:
        """Replace the log with a whole conversation (switching chats); an empty one shows
        `welcome` (what a newcomer needs to know) until the first message."""
        await self.remove_children()
        if widgets:
            await self.mount_all(widgets)
        elif welcome:
            await self.mount(Static(welcome, classes="welcome"))
        self.scroll_end(animate=False, immediate=True)
        self.anchor()

    async def add(self, widget: UserMessage | AssistantMessage) -> None:
        """Append one turn and follow it (re-anchors: sending means looking at the answer)."""
        await self.query(".welcome").remove()
        await self.mount(widget)
        self.anchor()

    async def drop_last_turn(self, keep_question: bool, only_if: bool = True) -> None:
        """Remove the last answer (keep_question) or the last question and its
        answer from the screen: a retry or an edit replaces them."""
        if not only_if:
            return
        children = list(self.children)
        questions = [i for i, w in enumerate(children) if isinstance(w, UserMessage)]
        if not questions:
            return
        start = questions[-1] + (1 if keep_question else 0)
        if children[start:]:
            await self.remove_children(children[start:])

    def show_message(self, message_id: int) -> None:
        """Scroll to a stored message (a search hit) and mark it; following the end stops."""
        for widget in self.children:
            matched = getattr(widget, "message_id", None) == message_id
            widget.set_class(matched, "-match")
            if matched:
                self.anchor(False)
                self.scroll_to_widget(widget, top=True, animate=False, immediate=True)

    def last_answer(self) -> AssistantMessage | None:
        """The newest assistant turn on screen, if any."""
        answers = self.query(AssistantMessage)
        return answers.last() if answers else None
