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
from typing import Optional, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.input.typeahead import get_typeahead, store_typeahead
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.key_binding.key_processor import KeyPressEvent
from prompt_toolkit.keys import Keys
from prompt_toolkit.output import Output

from engine.api import EngineClient, GenerationParams, GenerationStats
from outlier_tui.plain import commands
from outlier_tui.plain.render import DEFAULT_STYLE, DIM, RED, RESET, StreamRenderer
from outlier_tui.plain.stats import answer_line
from outlier_tui.plain.turn import AnswerCollector, TurnResult, one_line
from outlier_tui.store import ConversationStore, data_dir

HISTORY_FILENAME = "plain_history"
TITLE_CHARS = 60


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


def title_from(text: str) -> str:
    """A chat title from its first message: the first non-empty line, shortened."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "New chat")
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


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
        chat_id: Optional[int] = None,
        params: GenerationParams = GenerationParams(),
        show_stats: bool = True,
        color: bool = False,
        style: str = DEFAULT_STYLE,
        input: Optional[Input] = None,
        output: Optional[Output] = None,
        out: Optional[TextIO] = None,
        err: Optional[TextIO] = None,
        history: Optional[History] = None,
        model_name: str = "",
    ) -> None:
        self.engine = engine
        self.store = store
        self.chat_id = chat_id
        self.params = params
        self.show_stats = show_stats
        self.color = color
        self.style = style
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.model_name = model_name
        self.last_stats: Optional[GenerationStats] = None
        self._ctrl_c_armed = False
        self._terminated = 0  # the signal that asked the session to end, if any
        if history is None:
            history = self._default_history()
        self.prompt = PromptSession(
            message="> ",
            multiline=True,
            prompt_continuation=". ",
            key_bindings=key_bindings(),
            history=history,
            input=input,
            output=output,
            enable_open_in_editor=False,
        )

    def _default_history(self) -> History:
        try:
            directory = data_dir()
            directory.mkdir(parents=True, exist_ok=True)
            return FileHistory(str(directory / HISTORY_FILENAME))
        except OSError:
            return InMemoryHistory()

    # ---- writing -----------------------------------------------------------

    def write(self, text: str) -> None:
        """Answer text and command output, flushed at once (it is a live stream)."""
        self.out.write(text)
        self.out.flush()

    def note(self, text: str) -> None:
        """A dim status line in the transcript (stats, 'answer stopped', hints)."""
        self.write((DIM + text + RESET if self.color else text) + "\n")

    def error(self, text: str) -> None:
        """A one-line error on stderr, prefixed like every other outlier error."""
        line = f"outlier: {text}"
        self.err.write((RED + line + RESET if self.color else line) + "\n")
        self.err.flush()

    # ---- chats -------------------------------------------------------------

    def ensure_chat(self, first_message: str = "") -> int:
        """The current chat's id, creating the chat now if this session has none yet."""
        if self.chat_id is None:
            self.chat_id = self.store.create_chat(title_from(first_message)).id
        return self.chat_id

    def new_chat(self) -> None:
        """Start over: the next message opens a new chat and the engine drops its KV cache."""
        self.chat_id = None
        self.last_stats = None
        self.engine.reset()

    # ---- the loop ----------------------------------------------------------

    def banner(self) -> None:
        model = f" — {self.model_name}" if self.model_name else ""
        self.note(f"Outlier plain chat{model}. Enter sends, Alt-Enter or Ctrl-J adds a line, "
                  f"/help lists commands, Ctrl-D exits.")
        if self.chat_id is not None:
            chat = self.store.get_chat(self.chat_id)
            count = len(self.store.messages(chat.id))
            self.note(f"Continuing chat #{chat.id} “{chat.title}” ({count} messages; /history shows them).")

    async def run_async(self) -> int:
        """Prompt, answer, repeat, until /exit, Ctrl-D or a double Ctrl-C; returns the exit status."""
        self.banner()
        self._watch_termination()
        while not self._terminated:
            try:
                text = await self.prompt.prompt_async()
            except KeyboardInterrupt:
                if self._ctrl_c_armed:
                    return 0
                self._ctrl_c_armed = True
                self.note("(Ctrl-C again or Ctrl-D to exit)")
                continue
            except EOFError:
                return 128 + self._terminated if self._terminated else 0
            self._ctrl_c_armed = False
            if not text.strip():
                continue
            if text.startswith("/") and not text.startswith("//"):
                if not commands.dispatch(self, text):
                    return 0
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

    async def send(self, text: str) -> TurnResult:
        """Send one user message (saved before generation starts) and stream the answer."""
        chat_id = self.ensure_chat(text)
        if not self.store.messages(chat_id) and self.store.get_chat(chat_id).title == "New chat":
            self.store.rename_chat(chat_id, title_from(text))  # made by /system before any message
        self.store.add_message(chat_id, "user", text)
        messages = self.store.engine_messages(chat_id)
        answer_id = self.store.add_message(chat_id, "assistant", "", status="partial")
        renderer = StreamRenderer(self.write, color=self.color, style=self.style)
        collector = AnswerCollector(
            renderer.feed, save=lambda content, status: self.store.update_message(answer_id, content, status))
        await self._stream(messages, collector)
        renderer.finish()
        result = collector.finish()
        if not renderer.ends_with_newline:
            self.write("\n")
        if result.status == "cancelled":
            self.note("[answer stopped]")
        elif result.status == "error":
            self.error(result.error or "the answer failed")
        if result.stats is not None:
            self.last_stats = result.stats
            if self.show_stats:
                self.note(answer_line(result.stats, self._rss()))
        return result

    def _rss(self) -> Optional[int]:
        try:
            return self.engine.snapshot().rss_bytes or None
        except Exception:  # stats are best effort; the answer itself is what matters
            return None

    async def _stream(self, messages: list[dict], collector: AnswerCollector) -> None:
        """Run one request; Ctrl-C (read from the raw-mode terminal) cancels it."""
        inp = self.prompt.input
        kept: list = []

        def take(keys: list) -> None:
            for key_press in keys:
                if key_press.key == Keys.ControlC:
                    self.engine.cancel()
                elif key_press.key != Keys.CPRResponse:
                    kept.append(key_press)

        try:
            stream = self.engine.generate(messages, self.params)
        except Exception as exc:  # an engine that refuses the request up front
            collector.fail(one_line(exc))
            return
        take(get_typeahead(inp))  # keys typed before the answer started (Ctrl-C included)
        try:
            with inp.raw_mode(), inp.attach(lambda: take(inp.read_keys())):
                await self._consume(stream, collector)
        except EOFError:  # an input that cannot be watched (/dev/null): no cancel key
            await self._consume(stream, collector)
        finally:
            store_typeahead(inp, kept)

    async def _consume(self, stream: object, collector: AnswerCollector) -> None:
        try:
            async for event in stream:  # type: ignore[attr-defined]
                collector.handle(event)
        except asyncio.CancelledError:
            self.engine.cancel()
            collector.cancel()
            raise
        except Exception as exc:
            collector.fail(one_line(exc))
