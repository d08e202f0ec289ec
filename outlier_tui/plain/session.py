"""The interactive line-mode chat: a prompt_toolkit prompt, answers streamed below it.

No full-screen UI: every answer goes into the terminal's own scrollback, so it
works over slow SSH links, inside tmux and on terminals without colour.

Keys: Enter sends; Alt-Enter (Esc then Enter) or Ctrl-J inserts a new line.
While an answer streams the terminal is in raw mode and Ctrl-C cancels it;
other keys typed meanwhile are kept for the next prompt. At the prompt,
Ctrl-C clears the line, and on an empty line a second Ctrl-C exits; Ctrl-D
on an empty line exits.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.input.typeahead import get_typeahead, store_typeahead
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.key_binding.key_processor import KeyPressEvent
from prompt_toolkit.keys import Keys
from prompt_toolkit.output import Output

from engine.api import EngineClient, GenerationParams, GenerationStats, ModelInfo
from engine.reasoning import THINKING
from outlier_tui.core.attachments import (
    DEFAULT_LIMIT_BYTES,
    Attachment,
    AttachmentError,
    complete_path,
    expand_attachments,
    read_attachment,
    with_attachments,
)
from outlier_tui.core.chat import ChatError, ChatSession, PartFn, Turn, TurnResult
from outlier_tui.core.format import STATUS_LABELS, stats_line
from outlier_tui.plain import commands
from outlier_tui.plain.render import DEFAULT_STYLE, DIM, RED, RESET, StreamRenderer
from outlier_tui.store import ConversationStore, SearchHit, data_dir

HISTORY_FILENAME = "plain_history"


class AtPathCompleter(Completer):
    """Tab after `@` (or after `/file `) completes file and folder names."""

    def get_completions(self, document: Document, complete_event: CompleteEvent):
        word = document.get_word_before_cursor(WORD=True)
        line = document.current_line_before_cursor
        if word.startswith("@"):
            partial = word[1:]
        elif line.startswith("/file ") and line[len("/file ") :] == word:
            partial = word
        else:
            return
        for candidate in complete_path(partial):
            yield Completion(candidate, start_position=-len(partial))


def key_bindings() -> KeyBindings:
    """Enter sends, Alt-Enter / Ctrl-J break the line, Ctrl-C clears (or exits on an empty line)."""
    kb = KeyBindings()

    @kb.add("enter")
    def _send(event: KeyPressEvent) -> None:
        event.current_buffer.validate_and_handle()

    @kb.add("escape", "enter")
    @kb.add("c-j")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    @kb.add("c-c")
    def _interrupt(event: KeyPressEvent) -> None:
        if event.current_buffer.text:
            event.current_buffer.reset()
        else:
            event.app.exit(exception=KeyboardInterrupt, style="class:aborting")

    return kb


class PlainSession:
    """One interactive REPL bound to an engine (already loaded) and the conversation store.

    chat_id: continue that chat; None starts a new one, created in the store
    when the first message is sent (so quitting at once leaves no empty chat).
    input/output: prompt_toolkit's terminal I/O (tests pass a pipe input and a
    DummyOutput). out/err: where answers and notes are written.
    """

    def __init__(
        self,
        engine: EngineClient,
        store: ConversationStore,
        *,
        chat_id: int | None = None,
        params: GenerationParams = GenerationParams(),
        show_stats: bool = True,
        color: bool = False,
        style: str = DEFAULT_STYLE,
        input: Input | None = None,
        output: Output | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
        history: History | None = None,
        model_name: str = "",
        model_info: ModelInfo | None = None,
        show_thinking: bool = True,
        attach_limit: int = DEFAULT_LIMIT_BYTES,
    ) -> None:
        self.engine = engine
        self.store = store
        self.chat = ChatSession(engine, store, chat_id=chat_id, params=params, model_info=model_info)
        self.show_stats = show_stats
        self.show_thinking = show_thinking
        self.attach_limit = attach_limit
        self.color = color
        self.style = style
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.model_name = model_name
        self.attachments: list[Attachment] = []  # from /file, sent with the next message
        self.editing = False  # the next message replaces the last one (/edit)
        # An answer a command asked for (/retry), streamed once the command returns.
        self.pending_turn: Callable[[PartFn], Turn] | None = None
        self.search_hits: list[SearchHit] = []  # of the last /search, for /open to show the match
        self._next_default = ""
        self._ctrl_c_armed = False
        self._terminated = 0  # the signal that asked the session to end, if any
        if history is None:
            history = self._default_history()
        self.prompt: PromptSession[str] = PromptSession(
            message="> ",
            multiline=True,
            prompt_continuation=". ",
            key_bindings=key_bindings(),
            history=history,
            input=input,
            output=output,
            enable_open_in_editor=False,
            completer=AtPathCompleter(),
            complete_while_typing=False,
        )

    def _default_history(self) -> History:
        try:
            directory = data_dir()
            directory.mkdir(parents=True, exist_ok=True)
            return FileHistory(str(directory / HISTORY_FILENAME))
        except OSError:
            return InMemoryHistory()

    # The chat being continued lives in the core; commands read these.
    @property
    def chat_id(self) -> int | None:
        return self.chat.chat_id

    @property
    def last_stats(self) -> GenerationStats | None:
        return self.chat.last_stats

    @property
    def params(self) -> GenerationParams:
        return self.chat.params

    # ---- writing -----------------------------------------------------------

    def write(self, text: str) -> None:
        """Answer text and command output, flushed at once (it is a live stream)."""
        self.out.write(text)
        self.out.flush()

    def dim(self, text: str) -> str:
        return DIM + text + RESET if self.color else text

    def note(self, text: str) -> None:
        """A dim status line in the transcript (stats, 'answer stopped', hints)."""
        self.write(self.dim(text) + "\n")

    def error(self, text: str) -> None:
        """A one-line error on stderr, prefixed like every other outlier error."""
        line = f"outlier: {text}"
        self.err.write((RED + line + RESET if self.color else line) + "\n")
        self.err.flush()

    # ---- chats -------------------------------------------------------------

    def ensure_chat(self, first_message: str = "") -> int:
        """The current chat's id, creating the chat now if this session has none yet."""
        return self.chat.ensure_chat(first_message)

    def open_chat(self, chat_id: int) -> None:
        self.chat.open(chat_id)
        self.attachments, self.editing = [], False

    def new_chat(self) -> None:
        """Start over: the next message opens a new chat and the engine drops its KV cache."""
        self.chat.new_chat()
        self.attachments, self.editing = [], False

    def prefill_next_prompt(self, text: str) -> None:
        """Put `text` in the next prompt, ready to edit (/edit)."""
        self._next_default = text

    # ---- the loop ----------------------------------------------------------

    def banner(self) -> None:
        model = f" — {self.model_name}" if self.model_name else ""
        self.note(
            f"Outlier plain chat{model}. Enter sends, Alt-Enter or Ctrl-J adds a line, "
            f"@path attaches a file (Tab completes), /help lists commands, Ctrl-D exits."
        )
        if self.chat_id is not None:
            chat = self.store.get_chat(self.chat_id)
            count = len(self.store.messages(chat.id))
            self.note(f"Continuing chat #{chat.id} “{chat.title}” ({count} messages; /history shows them).")

    async def run_async(self) -> int:
        """Prompt, answer, repeat, until /exit, Ctrl-D or a double Ctrl-C; returns the exit status."""
        self.banner()
        self._watch_termination()
        while not self._terminated:
            default, self._next_default = self._next_default, ""
            try:
                text = await self.prompt.prompt_async(default=default)
            except KeyboardInterrupt:
                if self._ctrl_c_armed:
                    return 0
                self._ctrl_c_armed = True
                self.editing = False
                self.note("(Ctrl-C again or Ctrl-D to exit)")
                continue
            except EOFError:
                return 128 + self._terminated if self._terminated else 0
            self._ctrl_c_armed = False
            if not text.strip():
                self.editing = False
                continue
            if text.startswith("/") and not text.startswith("//"):
                if not commands.dispatch(self, text):
                    return 0
                start, self.pending_turn = self.pending_turn, None
                if start is not None:
                    await self.answer(start)
                continue
            if text.startswith("//"):
                text = text[1:]
            await self.send(text)
        return 128 + self._terminated

    def _watch_termination(self) -> None:
        """SIGTERM/SIGHUP: stop the answer (saved as shown, like Ctrl-C), then leave the loop."""
        from outlier_tui.termination import SIGNALS

        loop = asyncio.get_running_loop()

        def terminate(signum: int) -> None:
            self._terminated = signum
            self.engine.cancel()
            if self.prompt.app.is_running:
                self.prompt.app.exit(exception=EOFError)

        for sig in SIGNALS:
            try:
                loop.add_signal_handler(sig, terminate, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                return

    def run(self) -> int:
        """Blocking entry point for the CLI."""
        return asyncio.run(self.run_async())

    def build_message(self, text: str) -> str | None:
        """The text with its @path and /file attachments, or None (said why) if one cannot be attached."""
        try:
            text, _ = expand_attachments(text, limit_bytes=self.attach_limit)
            pending = [read_attachment(a.shown_path, limit_bytes=self.attach_limit) for a in self.attachments]
        except AttachmentError as exc:
            self.error(f"{exc} The message was not sent (it is in the history: Up recalls it).")
            return None
        self.attachments = []
        return with_attachments(text, pending)

    async def send(self, text: str) -> TurnResult | None:
        """Send one user message (saved before generation starts) and stream the answer."""
        message = self.build_message(text)
        if message is None:
            return None
        editing, self.editing = self.editing, False
        return await self.answer(
            lambda on_part: self.chat.edit_last(message, on_part) if editing else self.chat.send(message, on_part)
        )

    async def answer(self, start: Callable[[PartFn], Turn]) -> TurnResult | None:
        """Run the Turn `start(on_part)` makes and print it: thinking dimmed (or hidden), then the answer."""
        renderer = StreamRenderer(self.write, color=self.color, style=self.style)
        view = _ThinkingView(self)

        def on_part(kind: str, text: str) -> None:
            if kind == THINKING:
                view.thinking(text)
            else:
                view.answer_starts()
                renderer.feed(text)

        try:
            turn = start(on_part)
        except ChatError as exc:
            self.error(str(exc))
            return None
        result = await self._stream(turn)
        view.answer_starts()
        renderer.finish()
        if not renderer.ends_with_newline:
            self.write("\n")
        if result.status == "cancelled":
            self.note(f"[answer {STATUS_LABELS['cancelled']}]")
        elif result.status == "error":
            self.error(result.error or "the answer failed")
        if result.save_error:
            self.error(result.save_error)
        if result.stats is not None and self.show_stats:
            self.note(stats_line(result.stats, self._rss()))
        return result

    def _rss(self) -> int | None:
        try:
            return self.engine.snapshot().rss_bytes or None
        except Exception:  # stats are best effort; the answer itself is what matters
            return None

    async def _stream(self, turn: Turn) -> TurnResult:
        """Run one Turn; Ctrl-C (read from the raw-mode terminal) cancels it."""
        inp = self.prompt.input
        kept: list = []

        def take(keys: list) -> None:
            for key_press in keys:
                if key_press.key == Keys.ControlC:
                    self.engine.cancel()
                elif key_press.key != Keys.CPRResponse:
                    kept.append(key_press)

        take(get_typeahead(inp))  # keys typed before the answer started (Ctrl-C included)
        try:
            with inp.raw_mode(), inp.attach(lambda: take(inp.read_keys())):
                return await turn.run_async()
        except EOFError:  # an input that cannot be watched (/dev/null): no cancel key
            return await turn.run_async()
        finally:
            store_typeahead(inp, kept)


class _ThinkingView:
    """A reasoning model's thinking in the transcript: dimmed, between marker lines
    when there is no colour, or left out with `/think hide`."""

    def __init__(self, session: PlainSession) -> None:
        self.session = session
        self.open = False
        self.hidden_shown = False

    def thinking(self, text: str) -> None:
        session = self.session
        if not session.show_thinking:
            if not self.hidden_shown:
                session.write(session.dim("[thinking… hidden: /think show]") + "\n")
                self.hidden_shown = True
            return
        if not self.open:
            session.write(session.dim("[thinking]") + "\n")
            self.open = True
        session.write(session.dim(text))

    def answer_starts(self) -> None:
        if self.open:
            self.session.write("\n" + self.session.dim("[/thinking]") + "\n")
            self.open = False
