"""One chat with the engine: which chat (--chat), sending, streaming, saving as the
answer grows, cancelling, retrying and editing, titles, the system prompt, export
and the thinking switch.

Every front-end (the Textual app, the REPL, pipe mode) drives a ChatSession;
each answer is a Turn. A front-end only shows the (kind, text) parts a Turn
hands it and decides how the user cancels.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.api import (
    EngineClient,
    GenerationDone,
    GenerationFailed,
    GenerationParams,
    GenerationStats,
    Message,
    ModelInfo,
    TextDelta,
)
from engine.errors import OutlierError
from engine.reasoning import ANSWER, THINKING
from outlier_tui.core.attachments import strip_attachments
from outlier_tui.core.format import STATUS_NOTES, one_line, stats_line
from outlier_tui.store import Chat, ConversationStore, StoredMessage

SAVE_INTERVAL = 0.5  # seconds: a crash mid-answer loses at most this much of it
TITLE_CHARS = 60
DEFAULT_TITLE = "New chat"
NO_FINISH = "The engine stopped without finishing the answer: send it again."

PartFn = Callable[[str, str], None]  # (THINKING | ANSWER, text) as it streams


class ChatError(OutlierError):
    """A chat action that cannot be done now (nothing to retry, ...); one line."""


# what a chat that outgrew the context can do (both front-ends offer both)
TRIM_ADVICE = (
    "Drop the oldest turn and retry (/trim then /retry; in the app Ctrl+P → Trim the oldest turn, "
    "then F5), or start a new chat."
)


def title_from(text: str) -> str:
    """A chat title from its first message: the first non-empty line, shortened."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), DEFAULT_TITLE)
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def chat_from_option(store: ConversationStore, value: str | int | None) -> Chat | None:
    """The saved chat `--chat` names: an id or 'last' (the newest). None for no value or
    'new' (the front-end starts a chat). ChatError (one line) for an id that names no
    chat, or 'last' with none saved: both front-ends refuse them before loading anything."""
    if value is None or value == "new":
        return None
    if value == "last":
        chats = store.list_chats()
        if not chats:
            raise ChatError("--chat last: there are no saved chats yet (start one without --chat).")
        return chats[0]
    try:
        return store.get_chat(int(value))
    except (ValueError, KeyError):
        raise ChatError(
            f"--chat {value}: no such chat (an id from the chat list or /chats, 'last' or 'new')."
        ) from None


@dataclass
class TurnResult:
    text: str
    status: str  # "complete" | "cancelled" | "error"
    thinking: str = ""
    stats: GenerationStats | None = None
    error: str | None = None
    save_error: str | None = None  # the store could not keep the answer (disk full, ...)
    stopped_by: int | None = None  # the signal that stopped it (SIGINT: Ctrl-C), when one did

    def note(self, rss_bytes: int | None = None) -> str:
        """The line a front-end shows under the answer: stats, the error, or what the status means."""
        if self.status == "error":
            return self.error or STATUS_NOTES["error"]
        if self.status == "complete" and self.stats is not None:
            return stats_line(self.stats, rss_bytes)
        return STATUS_NOTES.get(self.status, "")


class Turn:
    """One answer being generated: collects thinking and answer apart, saves both
    as "partial" at most every `save_every` seconds, and ends with a status.

    Drive it with run() (a thread) or run_async() (an event loop), or feed
    events to handle() and call finish() yourself. Without a store (a one-off
    question) nothing is saved.
    """

    def __init__(
        self,
        engine: EngineClient,
        store: ConversationStore | None,
        answer_id: int | None,
        messages: list[Message],
        params: GenerationParams,
        on_part: PartFn,
        clock: Callable[[], float] = time.monotonic,
        save_every: float = SAVE_INTERVAL,
    ) -> None:
        self.engine = engine
        self.store = store
        self.answer_id = answer_id
        self.messages = messages
        self.params = params
        self.saves = 0
        self._on_part = on_part
        self._clock = clock
        self._save_every = save_every
        self._last_save = clock()
        self._answer: list[str] = []
        self._thinking: list[str] = []
        self.result: TurnResult | None = None
        self.save_error: str | None = None
        self._finished: TurnResult | None = None

    @property
    def text(self) -> str:
        return "".join(self._answer)

    @property
    def thinking(self) -> str:
        return "".join(self._thinking)

    def handle(self, event: object) -> None:
        """Take one engine event (TextDelta, GenerationDone or GenerationFailed)."""
        if isinstance(event, TextDelta):
            kind = THINKING if event.kind == THINKING else ANSWER
            (self._thinking if kind == THINKING else self._answer).append(event.text)
            self._on_part(kind, event.text)
            now = self._clock()
            if now - self._last_save >= self._save_every:
                self._save("partial")
                self._last_save = now
        elif isinstance(event, GenerationDone):
            status = "cancelled" if event.cancelled else "complete"
            self.result = TurnResult(self.text, status, self.thinking, stats=event.stats)
        elif isinstance(event, GenerationFailed):
            self.fail(event.message)

    def fail(self, message: str) -> None:
        """Record a failure (an event, or an exception from the engine)."""
        self.result = TurnResult(self.text, "error", self.thinking, error=message)

    def cancel(self) -> None:
        """Record that the answer was abandoned without the engine's final event."""
        if self.result is None:
            self.result = TurnResult(self.text, "cancelled", self.thinking)

    def finish(self) -> TurnResult:
        """The final result, saved with its final status (once; later calls return it)."""
        if self._finished is not None:
            return self._finished
        if self.result is None:
            self.result = TurnResult(self.text, "error", self.thinking, error=NO_FINISH)
        result = self.result
        content = result.text if result.text or result.status != "error" else (result.error or "")
        self.save_error = None  # the final save decides: one that works keeps everything
        self._save(result.status, content, final=True)
        result.save_error = self.save_error
        self._finished = result
        return result

    def _save(self, status: str, content: str | None = None, final: bool = False) -> None:
        """Save the answer so far. A store that fails (disk full, a lost file) must not stop
        the answer the user is reading: the failure is kept as one line for the front-end,
        and partial saves stop until the final one tries again."""
        if self.store is None or self.answer_id is None or (self.save_error and not final):
            return
        try:
            self.store.update_message(
                self.answer_id, self.text if content is None else content, status, thinking=self.thinking.strip()
            )
        except (sqlite3.Error, OSError, OutlierError) as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.save_error = (
                f"This answer could not be saved ({detail}): free some disk space; it "
                "stays on screen but is not in the chat history."
            )
            return
        self.saves += 1

    def run(self) -> TurnResult:
        """Stream the answer on this thread. Ctrl-C (KeyboardInterrupt) stops it and keeps
        the text; so do SIGTERM and SIGHUP (termination.Terminated, a KeyboardInterrupt),
        and result.stopped_by says which. A closed stdout (BrokenPipeError) stops it,
        saves, and is re-raised."""
        stopped_by = None
        try:
            for event in self.engine.generate(self.messages, self.params):
                self.handle(event)
        except KeyboardInterrupt as exc:
            self.engine.cancel()
            self.cancel()
            stopped_by = int(getattr(exc, "signum", signal.SIGINT))
        except BrokenPipeError:
            self.engine.cancel()
            self.cancel()
            self.finish()
            raise
        except Exception as exc:  # an engine that refuses the request or breaks mid-way
            self.fail(one_line(exc))
        result = self.finish()
        if stopped_by is not None and result.status == "cancelled":
            result.stopped_by = stopped_by
        return result

    async def run_async(self) -> TurnResult:
        """Stream the answer in the event loop. If the task is cancelled (the app
        closes), or SIGTERM/SIGHUP's Terminated (a KeyboardInterrupt) is raised while this
        task runs, the engine is told to stop and what came so far is saved as stopped."""
        try:
            async for event in self.engine.generate(self.messages, self.params):  # type: ignore[attr-defined]
                self.handle(event)
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.engine.cancel()
            self.cancel()
            self.finish()
            raise
        except Exception as exc:
            self.fail(one_line(exc))
        return self.finish()


def one_off_turn(engine: EngineClient, question: str, params: GenerationParams, on_part: PartFn) -> Turn:
    """A single question with no chat and nothing stored (`outlier generate`, a pipe)."""
    return Turn(engine, None, None, [{"role": "user", "content": question}], params, on_part)


class ChatSession:
    """The current chat of one front-end, bound to an engine and the store.

    chat_id None: a new chat, created in the store when the first message is
    sent (so quitting at once leaves no empty chat). params.enable_thinking,
    when set (`--think` / `--no-think`), is kept on the chat it applies to.
    """

    def __init__(
        self,
        engine: EngineClient,
        store: ConversationStore,
        *,
        chat_id: int | None = None,
        params: GenerationParams = GenerationParams(),
        model_info: ModelInfo | None = None,
        clock: Callable[[], float] = time.monotonic,
        save_every: float = SAVE_INTERVAL,
    ) -> None:
        self.engine = engine
        self.store = store
        self.params = params
        self._model_info = model_info
        self.clock = clock
        self.save_every = save_every
        self.chat_id: int | None = None
        self.last_stats: GenerationStats | None = None
        if chat_id is not None:
            self.open(chat_id, apply_cli_thinking=True)

    @property
    def model_info(self) -> ModelInfo | None:
        """The loaded model (given, or asked of the engine once it has one)."""
        if self._model_info is None:
            try:
                self._model_info = self.engine.snapshot().model
            except Exception:  # an engine with nothing loaded (or gone) has no model info
                return None
        return self._model_info

    @model_info.setter
    def model_info(self, info: ModelInfo | None) -> None:
        self._model_info = info

    # ---- chats -------------------------------------------------------------

    @property
    def chat(self) -> Chat | None:
        return self.store.get_chat(self.chat_id) if self.chat_id is not None else None

    def ensure_chat(self, first_message: str = "") -> int:
        """The current chat's id, creating the chat now if there is none yet."""
        if self.chat_id is None:
            self.chat_id = self.store.create_chat(title_from(first_message)).id
            self._keep_cli_thinking()
        return self.chat_id

    def open(self, chat_id: int, apply_cli_thinking: bool = False) -> Chat:
        """Continue a saved chat (KeyError if there is none). apply_cli_thinking:
        the chat named on the command line takes `--think` / `--no-think`; chats
        opened later keep their own choice."""
        chat = self.store.get_chat(chat_id)
        if self.chat_id is not None and self.chat_id != chat.id:
            self.engine.save_prompt_caches()  # the chat left keeps its KV cache for the next run
        self.chat_id = chat.id
        self.last_stats = None
        if apply_cli_thinking:
            self._keep_cli_thinking()
        return self.store.get_chat(chat.id)

    def new_chat(self) -> None:
        """Start over. The chat left keeps its KV cache (in memory, and saved for the next run):
        the engine finds each chat's cache by its tokens. The new chat is saved at its first message."""
        if self.chat_id is not None:
            self.engine.save_prompt_caches()
        self.chat_id = None
        self.last_stats = None

    def new_saved_chat(self) -> Chat:
        """Start over with a chat saved now (the app shows it at once)."""
        self.new_chat()
        return self.store.get_chat(self.ensure_chat())

    def messages(self) -> list[StoredMessage]:
        return self.store.messages(self.chat_id) if self.chat_id is not None else []

    def rename(self, title: str, chat_id: int | None = None) -> None:
        """Retitle `chat_id` (default: this chat); a blank title is refused."""
        if not title.strip():
            raise ChatError("A chat needs a title: the name was not changed.")
        target = chat_id if chat_id is not None else self.ensure_chat()
        self.store.rename_chat(target, title.strip())

    @property
    def system_prompt(self) -> str:
        chat = self.chat
        return chat.system_prompt if chat is not None else ""

    def set_system_prompt(self, text: str) -> None:
        """This chat's system prompt ("" clears it); it applies from the next message."""
        self.store.set_system_prompt(self.ensure_chat(), text.strip())

    def export(self, path: Path, chat_id: int | None = None) -> Path:
        """Write `chat_id` (default: this chat) to `path` as Markdown; ChatError says why not."""
        target = chat_id if chat_id is not None else self.chat_id
        if target is None:
            raise ChatError("Nothing to export yet: send a message first.")
        path = path.expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.store.export_markdown(target), encoding="utf-8")
        except OSError as exc:
            raise ChatError(f"Cannot write {path}: {exc.strerror or one_line(exc)}") from None
        return path

    def _keep_cli_thinking(self) -> None:
        if self.params.enable_thinking is not None and self.chat_id is not None:
            self.store.set_chat_thinking(self.chat_id, self.params.enable_thinking)

    # ---- thinking ------------------------------------------------------------

    @property
    def can_switch_thinking(self) -> bool:
        """Whether the loaded model's template takes `enable_thinking`."""
        return bool(self.model_info and self.model_info.template_takes_enable_thinking)

    @property
    def model_thinks(self) -> bool:
        return bool(self.model_info and self.model_info.think_start)

    def thinking_enabled(self) -> bool | None:
        """This chat's choice (None: the template's default)."""
        chat = self.chat
        if chat is not None and chat.enable_thinking is not None:
            return chat.enable_thinking
        return self.params.enable_thinking

    def set_thinking(self, enable: bool) -> None:
        """Turn thinking on or off for this chat (kept in the store)."""
        if not self.can_switch_thinking:
            raise ChatError("This model's chat template has no thinking switch (enable_thinking).")
        self.store.set_chat_thinking(self.ensure_chat(), enable)

    def request_params(self) -> GenerationParams:
        enable = self.thinking_enabled() if self.can_switch_thinking else None
        return dataclasses.replace(self.params, enable_thinking=enable)

    def engine_messages(self) -> list[Message]:
        """What the model sees: thinking goes back only if the template renders it."""
        keep = bool(self.model_info and self.model_info.template_keeps_thinking)
        return self.store.engine_messages(self.ensure_chat(), keep_thinking=keep)

    # ---- answering -----------------------------------------------------------

    def send(self, text: str, on_part: PartFn) -> Turn:
        """Commit the user's message and an empty "partial" answer; the Turn streams it."""
        chat_id = self.ensure_chat(text)
        chat = self.store.get_chat(chat_id)
        if chat.title == DEFAULT_TITLE and not self.store.messages(chat_id):
            self.store.rename_chat(chat_id, title_from(text))
        self.store.add_message(chat_id, "user", text)
        return self._answer(on_part)

    def retry(self, on_part: PartFn) -> Turn:
        """Regenerate the last answer: it is replaced (in the store too); the
        engine reuses the KV cache of everything before it."""
        last_user = self._last_user()
        self.store.delete_messages_from(self.ensure_chat(), last_user.id + 1)
        return self._answer(on_part)

    def edit_last(self, text: str, on_part: PartFn) -> Turn:
        """Replace the last user message (and its answer) with `text` and answer it."""
        last_user = self._last_user()
        first = self.messages()[0].id == last_user.id
        chat_id = self.ensure_chat()
        self.store.delete_messages_from(chat_id, last_user.id)
        if first and self.store.get_chat(chat_id).title == title_from(last_user.content):
            self.store.rename_chat(chat_id, title_from(text))  # the title it named follows it
        self.store.add_message(chat_id, "user", text)
        return self._answer(on_part)

    def trim_oldest(self) -> int:
        """Drop the oldest turn (a user message and its answer) of a chat that outgrew the
        context: the user chooses to, nothing is cut silently. Returns the messages removed."""
        if self.chat_id is None:
            raise ChatError("Nothing to trim: this chat has no messages yet.")
        gone = self.store.delete_oldest_turn(self.chat_id)
        if not gone:
            raise ChatError("Nothing to trim: the chat has only its last message left. Start a new chat (/new).")
        return gone

    def last_user_text(self) -> str | None:
        users = [m for m in self.messages() if m.role == "user"]
        return users[-1].content if users else None

    def last_user_draft(self) -> str | None:
        """The last message as the user typed it (attached files back to `@path`), to edit."""
        text = self.last_user_text()
        return strip_attachments(text) if text is not None else None

    def last_answer(self) -> StoredMessage | None:
        answers = [m for m in self.messages() if m.role == "assistant"]
        return answers[-1] if answers else None

    def _last_user(self) -> StoredMessage:
        users = [m for m in self.messages() if m.role == "user"]
        if not users:
            raise ChatError("Nothing to redo yet: send a message first.")
        return users[-1]

    def _answer(self, on_part: PartFn) -> Turn:
        messages = self.engine_messages()
        answer_id = self.store.add_message(self.ensure_chat(), "assistant", "", status="partial")
        return _SessionTurn(self, answer_id, messages, on_part)


class _SessionTurn(Turn):
    """A Turn that reports its stats back to the session that made it."""

    def __init__(self, session: ChatSession, answer_id: int, messages: list[Message], on_part: PartFn) -> None:
        super().__init__(
            session.engine,
            session.store,
            answer_id,
            messages,
            session.request_params(),
            on_part,
            session.clock,
            session.save_every,
        )
        self._session = session

    def handle(self, event: object) -> None:
        if isinstance(event, GenerationFailed) and event.error_type == "PromptTooLongError":
            event = GenerationFailed(f"{event.message.rstrip('.')}. {TRIM_ADVICE}", event.error_type)
        super().handle(event)

    def finish(self) -> TurnResult:
        result = super().finish()
        if result.stats is not None:
            self._session.last_stats = result.stats
        return result
