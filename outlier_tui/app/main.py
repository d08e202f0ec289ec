"""The Outlier chat app: layout, key bindings, actions, model loading and the answer worker.

Threads (README, "How it works"): this runs on Textual's asyncio loop and never blocks on
the model. Answers come from an exclusive async worker awaiting the engine's
stream; telemetry is polled on a timer (at most 10 Hz), never per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerCancelled, WorkerFailed

from engine.api import (
    EngineClient,
    GenerationParams,
    LoadProgress,
    ModelInfo,
    ProgressFn,
    TelemetrySnapshot,
)
from engine.reasoning import THINKING
from outlier_tui.app.chat_view import AssistantMessage, ChatLog, UserMessage
from outlier_tui.app.commands import OutlierCommands
from outlier_tui.app.config import Traversable
from outlier_tui.app.heatmap import ExpertHeatmap
from outlier_tui.app.keymap import load_keymap
from outlier_tui.app.memory_pane import MemoryPane
from outlier_tui.app.memory_stats import MemoryHistory
from outlier_tui.app.prompt_input import PromptInput
from outlier_tui.app.screens import (
    ChatListScreen,
    ConfirmDialog,
    InputDialog,
    SearchScreen,
    TextDialog,
)
from outlier_tui.app.status_bar import ModelStatus, TopBar
from outlier_tui.app.text_tools import export_path
from outlier_tui.app.themes import load_themes, pick_theme
from outlier_tui.chat_params import CHAT_MAX_TOKENS
from outlier_tui.core.attachments import DEFAULT_LIMIT_BYTES, AttachmentError, expand_attachments
from outlier_tui.core.chat import SAVE_INTERVAL, ChatError, ChatSession, Turn
from outlier_tui.core.code_blocks import code_blocks
from outlier_tui.core.format import one_line
from outlier_tui.store import Chat, ConversationStore, StoredMessage

COPY_KEYS = 9  # alt+1 … alt+9 copy code block 1 … 9 of the last answer
ResolveModel = Callable[[str | None, ProgressFn], Path | str]  # str: a name the server knows

# (binding id, title in the command palette, help, action). Every action is here.
PALETTE: tuple[tuple[str, str, str, str], ...] = (
    ("new_chat", "New chat", "Start an empty conversation", "new_chat"),
    ("chats", "Chats: list and switch", "Open, rename or delete saved chats", "chats"),
    ("rename_chat", "Rename chat", "Give the current chat a new title", "rename_chat"),
    ("delete_chat", "Delete chat", "Delete the current chat and its messages", "delete_chat"),
    ("export_chat", "Export chat to Markdown", "Write the current chat to a .md file", "export_chat"),
    ("system_prompt", "Edit system prompt", "The current chat's system prompt", "system_prompt"),
    ("copy_answer", "Copy last answer", "To the clipboard (OSC 52, works over SSH)", "copy_answer"),
    ("copy_code", "Copy last code block", "From the last answer, to the clipboard (OSC 52)", "copy_code"),
    ("retry", "Regenerate the last answer", "Replace it with a new one", "retry"),
    ("edit_last", "Edit the last message", "Put it back in the box; sending replaces it and its answer", "edit_last"),
    ("search", "Search all chats", "Full-text search; Enter opens the chat at the match", "search"),
    ("toggle_thinking", "Show or fold the thinking", "Of the last answer of a reasoning model", "toggle_thinking"),
    ("cancel", "Stop the answer", "Keep what was generated, marked as stopped", "cancel_answer"),
    ("toggle_heatmap", "Toggle expert heatmap", "Show or hide the expert-cache pane", "toggle_heatmap"),
    ("toggle_memory", "Toggle memory pane", "Show or hide the memory pane", "toggle_memory"),
    ("load_model", "Load model folder…", "Load another mlx-community MoE model folder", "load_model"),
    ("focus_chat", "Focus chat log", "Scroll the conversation with the keyboard", "focus_chat"),
    ("focus_prompt", "Focus message box", "Back to typing", "focus_prompt"),
    ("quit", "Quit", "Leave Outlier (chats are saved)", "quit"),
)
# Actions that change the current chat: not while a dialog is open.
CHAT_ACTIONS = {
    "new_chat",
    "chats",
    "rename_chat",
    "delete_chat",
    "export_chat",
    "system_prompt",
    "load_model",
    "copy_answer",
    "copy_code",
    "retry",
    "edit_last",
    "search",
    "set_thinking",
}


class LoadProgressed(Message):
    """Progress of a model load, posted from the engine or resolver thread."""

    def __init__(self, fraction: float, text: str) -> None:
        super().__init__()
        self.fraction = fraction
        self.text = text


class OutlierApp(App):
    """Full-screen chat with a live view of the engine's expert cache and memory."""

    CSS_PATH = "outlier.tcss"
    TITLE = "Outlier"
    COMMANDS = App.COMMANDS | {OutlierCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
        Binding("escape", "cancel_answer", "Stop", id="cancel"),
        Binding("ctrl+n", "new_chat", "New", id="new_chat"),
        Binding("ctrl+o", "chats", "Chats", id="chats"),
        Binding("ctrl+g", "copy_answer", "Copy", id="copy_answer"),
        Binding("ctrl+f", "copy_code", "Copy code", id="copy_code", show=False),
        Binding("ctrl+r", "rename_chat", "Rename", id="rename_chat", show=False),
        Binding("ctrl+s", "export_chat", "Export", id="export_chat", show=False),
        Binding("ctrl+t", "system_prompt", "System prompt", id="system_prompt", show=False),
        Binding("ctrl+l", "load_model", "Model", id="load_model", show=False),
        Binding("f2", "toggle_heatmap", "Heatmap", id="toggle_heatmap", show=False),
        Binding("f3", "toggle_memory", "Memory", id="toggle_memory", show=False),
        Binding("f4", "focus_chat", "Focus chat", id="focus_chat", show=False),
        Binding("f5", "retry", "Retry", id="retry", show=False),
        Binding("f8", "toggle_thinking", "Thinking", id="toggle_thinking", show=False),
        Binding("f10", "search", "Search", id="search", show=False),
        *(
            Binding(f"alt+{n}", f"copy_code({n})", f"Copy code {n}", id=f"copy_code_{n}", show=False)
            for n in range(1, COPY_KEYS + 1)
        ),
    ]

    def __init__(
        self,
        engine: EngineClient,
        store: ConversationStore,
        model_dir: str | None = None,
        cache_bytes: int | None = None,
        theme: str | None = None,
        *,
        chat: str | int | None = None,
        resolve_model: ResolveModel | None = None,
        params: GenerationParams | None = None,
        telemetry_interval: float | None = 0.1,
        snapshot_source: Callable[[], TelemetrySnapshot] | None = None,
        clock: Callable[[], float] = time.monotonic,
        save_interval: float = SAVE_INTERVAL,
        attach_limit: int = DEFAULT_LIMIT_BYTES,
        theme_dirs: Sequence[Traversable] | None = None,
        keymap_file: Path | None = None,
        export_dir: Path | None = None,
        startup_notes: tuple[str, ...] = (),
    ) -> None:
        """engine/store are injected (tests pass a FakeEngine and a temp store).

        chat: an id, "last", "new" or None (reuse the newest chat if empty, else
        start one). resolve_model(model_dir, on_progress) -> folder, e.g. the
        demo-model builder; without it model_dir is loaded as is.
        telemetry_interval None stops the timer (tests call refresh_telemetry).
        """
        super().__init__()
        self.engine = engine
        self.model_dir = model_dir
        self.cache_bytes = cache_bytes
        self.session = ChatSession(
            engine,
            store,
            params=params or GenerationParams(max_tokens=CHAT_MAX_TOKENS),
            clock=clock,
            save_every=save_interval,
        )
        self.attach_limit = attach_limit
        self.session.model_info = None  # set when a load finishes
        self.model_state = "empty"
        self.last_load_error: str | None = None
        self._requested_chat = chat
        self._startup_notes = startup_notes  # e.g. the chat database was moved aside
        self._requested_theme = theme
        self._resolve_model = resolve_model
        self._telemetry_interval = telemetry_interval
        self._snapshot_source = snapshot_source or engine.snapshot
        self._clock = clock
        self._theme_dirs = theme_dirs
        self._keymap_file = keymap_file
        self._export_dir = export_dir
        self._memory_history = MemoryHistory()
        self._answer_worker: Worker | None = None
        self.generating = False
        self.startup_warnings: list[str] = []
        self._main_screen: Screen | None = None

    @property
    def chat(self) -> Chat | None:
        """The chat on screen (read from the store: titles and settings stay current)."""
        return self.session.chat

    @property
    def params(self) -> GenerationParams:
        return self.session.params

    @property
    def model_info(self) -> ModelInfo | None:
        """The loaded model; None while none is (the session asks nothing of the engine then)."""
        return self.session.model_info if self.model_state == "ready" else None

    @model_info.setter
    def model_info(self, info: ModelInfo | None) -> None:
        self.session.model_info = info

    @property
    def store(self) -> ConversationStore:
        return self.session.store

    @store.setter
    def store(self, store: ConversationStore) -> None:
        self.session.store = store

    # ---- layout ------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield TopBar(id="top-bar")
        with Horizontal(id="main"):
            with Vertical(id="chat-pane"):
                yield ChatLog(id="chat-log")
                yield ModelStatus(id="model-status")
                yield PromptInput(id="prompt")
            with Vertical(id="side"):
                heatmap = ExpertHeatmap(id="heatmap")
                heatmap.border_title = "Expert cache"
                yield heatmap
                memory = MemoryPane(id="memory")
                memory.border_title = "Memory"
                yield memory
        yield Footer()

    @property
    def main_screen(self) -> Screen:
        """The chat screen, even while a dialog is on top (timers and workers use it)."""
        return self._main_screen or self.screen

    async def on_mount(self) -> None:
        self._main_screen = self.screen
        themes, warnings = load_themes(self._theme_dirs)
        for theme in themes.values():
            self.register_theme(theme)
        name, warning = pick_theme(self._requested_theme, set(self.available_themes))
        self.theme = name
        keymap, keymap_warnings = load_keymap(self._keymap_file, self.binding_ids())
        self.set_keymap(keymap)
        self.startup_warnings = warnings + keymap_warnings + ([warning] if warning else [])
        for text in self.startup_warnings:
            self.notify(text, title="Settings", severity="warning", timeout=10)
        for text in self._startup_notes:
            self.notify(text, title="Chats", severity="warning", timeout=20)
        self.main_screen.query_one(ModelStatus).show_progress(0.0, "waiting for the screen")
        await self._open_initial_chat()
        self.main_screen.query_one(PromptInput).focus()
        if self._telemetry_interval:
            self.set_interval(self._telemetry_interval, self.refresh_telemetry)
        self.refresh_telemetry()
        # Load only once the first frame is on screen, so the user sees progress.
        self.call_after_refresh(self.start_load, self.model_dir)

    def binding_ids(self) -> set[str]:
        """Every binding id a keymap may remap."""
        ids = {b.id for b in self.BINDINGS if isinstance(b, Binding) and b.id}
        ids |= {b.id for b in PromptInput.BINDINGS if isinstance(b, Binding) and b.id}
        for screen in (ChatListScreen, InputDialog, TextDialog, ConfirmDialog):
            ids |= {b.id for b in screen.BINDINGS if isinstance(b, Binding) and b.id}
        return ids

    def key_for(self, binding_id: str) -> str:
        """The key currently bound to `binding_id` (after the user's keymap), for help text."""
        if binding_id in self._keymap:
            return self._keymap[binding_id].split(",")[0]
        for binding in [*self.BINDINGS, *PromptInput.BINDINGS]:
            if isinstance(binding, Binding) and binding.id == binding_id:
                return binding.key.split(",")[0]
        return ""

    def palette_commands(self) -> list[tuple[str, str, str]]:
        """(title, help, action) for the command palette: actions, themes, chats."""
        entries = []
        for binding_id, title, help_text, action in PALETTE:
            key = self.key_for(binding_id)
            entries.append((title, f"{help_text}  [{key}]" if key else help_text, action))
        for name in sorted(self.available_themes):
            entries.append((f"Theme: {name}", "Switch the colour theme", f"set_theme({name!r})"))
        if self.session.can_switch_thinking:
            enabled = self.session.thinking_enabled()
            entries.append(
                (
                    "Thinking: turn off" if enabled is not False else "Thinking: turn on",
                    "Whether the model thinks before answering, for this chat",
                    f"set_thinking({enabled is False})",
                )
            )
        answer = self._last_answer_text() or ""
        for number, block in enumerate(code_blocks(answer)[:50], 1):
            first = next((ln.strip() for ln in block.splitlines() if ln.strip()), "")
            key = self.key_for(f"copy_code_{number}")
            entries.append(
                (
                    f"Copy code block {number}: {first[:40]}",
                    "From the last answer (OSC 52)" + (f"  [{key}]" if key else ""),
                    f"copy_code({number})",
                )
            )
        for chat in self.store.list_chats()[:50]:
            entries.append((f"Open chat: {chat.title}", f"Chat #{chat.id}", f"open_chat({chat.id})"))
        return entries

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_answer":
            return self.generating
        return not (action in CHAT_ACTIONS and isinstance(self.screen, ModalScreen))

    # ---- chats -------------------------------------------------------------

    async def _open_initial_chat(self) -> None:
        chats = self.store.list_chats()
        requested = self._requested_chat
        chat: Chat | None = None
        if requested not in (None, "", "new", "last"):
            try:
                chat = self.store.get_chat(int(requested))  # type: ignore[arg-type]
            except (KeyError, ValueError):
                self.notify(f"No chat with id {requested}: opened a new one.", severity="warning")
        elif requested == "last" and chats:
            chat = chats[0]
        elif requested is None and chats and not self.store.messages(chats[0].id):
            chat = chats[0]  # reuse an empty chat instead of piling up new ones
        if chat is None:
            chat = self.session.new_saved_chat()
        await self.open_chat(chat.id, first=True)

    async def open_chat(self, chat_id: int, at_message: int | None = None, first: bool = False) -> None:
        """Show a saved chat (history from the store), scrolled to `at_message` if
        given. first: the chat the app starts with (it takes --think/--no-think)."""
        self.session.open(chat_id, apply_cli_thinking=first)
        self.main_screen.query_one(PromptInput).editing = False
        widgets = [self._message_widget(m) for m in self.store.messages(chat_id)]
        log = self.main_screen.query_one(ChatLog)
        await log.show(widgets)
        if at_message is not None:
            log.show_message(at_message)
        self._update_top_bar()

    @staticmethod
    def _message_widget(message: StoredMessage) -> UserMessage | AssistantMessage:
        if message.role == "user":
            return UserMessage(message.content, message.id)
        return AssistantMessage(message.content, message.status, thinking=message.thinking, message_id=message.id)

    def _update_top_bar(self) -> None:
        model = ""
        if self.model_info is not None:
            model = Path(self.model_info.path).name or self.model_info.path
        elif self.model_dir:
            model = Path(self.model_dir).name
        state = "generating" if self.generating else ("ready" if self.model_state == "ready" else self.model_state)
        title = self.chat.title if self.chat else ""
        self.main_screen.query_one(TopBar).set_state(title, model, state)

    async def _stop_answer(self) -> None:
        """Cancel a running answer and wait until it is saved (the engine stops between tokens)."""
        worker = self._answer_worker
        if worker is not None and not worker.is_finished:
            self.engine.cancel()
            with contextlib.suppress(WorkerCancelled, WorkerFailed):
                await worker.wait()

    def _in_background(self, coro, name: str) -> None:
        """Navigation runs as a worker: waiting for a stopping answer never freezes the UI."""

        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:  # e.g. the database went away: tell, keep running
                self.notify(f"Could not {name}: {one_line(exc)}", severity="error", timeout=10)

        self.run_worker(guarded(), name=name, group="navigate", exclusive=True)

    def action_new_chat(self) -> None:
        self._in_background(self._new_chat(), "start a new chat")

    async def _new_chat(self) -> None:
        await self._stop_answer()
        chat = self.session.new_saved_chat()
        await self.open_chat(chat.id)
        self.action_focus_prompt()

    def action_open_chat(self, chat_id: int) -> None:
        self._in_background(self._switch_chat(chat_id), "switch chats")

    async def _switch_chat(self, chat_id: int) -> None:
        await self._stop_answer()
        try:
            await self.open_chat(chat_id)
        except KeyError:
            self.notify(f"Chat {chat_id} no longer exists.", severity="warning")
        self.action_focus_prompt()

    def action_chats(self) -> None:
        current = self.chat.id if self.chat else None
        self.push_screen(ChatListScreen(self.store.list_chats(), current), self._chat_list_done)

    def _chat_list_done(self, result: tuple[str, int] | None) -> None:
        if result is None:
            return
        verb, chat_id = result
        if verb == "open":
            self.action_open_chat(chat_id)
        elif verb == "new":
            self.action_new_chat()
        elif verb == "rename":
            self._ask_rename(chat_id)
        elif verb == "delete":
            self._ask_delete(chat_id)

    def action_rename_chat(self) -> None:
        if self.chat is not None:
            self._ask_rename(self.chat.id)

    def _ask_rename(self, chat_id: int) -> None:
        chat = self.store.get_chat(chat_id)

        def done(title: str | None) -> None:
            if title:
                self.store.rename_chat(chat_id, title)
                self._update_top_bar()

        self.push_screen(InputDialog("Rename chat", chat.title), done)

    def action_delete_chat(self) -> None:
        if self.chat is not None:
            self._ask_delete(self.chat.id)

    def _ask_delete(self, chat_id: int) -> None:
        chat = self.store.get_chat(chat_id)

        def done(yes: bool | None) -> None:
            if yes:
                self._in_background(self._delete_chat(chat_id), "delete the chat")

        self.push_screen(ConfirmDialog(f"Delete “{chat.title}” and all its messages?"), done)

    async def _delete_chat(self, chat_id: int) -> None:
        is_current = self.chat is not None and self.chat.id == chat_id
        if is_current:
            await self._stop_answer()
        self.store.delete_chat(chat_id)
        self.notify("Chat deleted.")
        if is_current:
            remaining = self.store.list_chats()
            target = remaining[0] if remaining else self.session.new_saved_chat()
            await self.open_chat(target.id)

    def action_export_chat(self) -> None:
        if self.chat is None:
            return
        chat = self.chat
        default = export_path(chat.title, chat.id, self._export_dir)

        def done(path: str | None) -> None:
            if path:
                self.export_chat(chat.id, Path(path).expanduser())

        self.push_screen(InputDialog("Export chat to Markdown file", str(default)), done)

    def export_chat(self, chat_id: int, path: Path) -> None:
        """Write a chat as Markdown to `path`, telling the user where (or why not)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.store.export_markdown(chat_id), encoding="utf-8")
        except OSError as exc:
            self.notify(f"Cannot write {path}: {exc.strerror or exc}", severity="error")
            return
        self.notify(f"Exported to {path}")

    def action_system_prompt(self) -> None:
        if self.chat is None:
            return
        chat_id = self.chat.id

        def done(text: str | None) -> None:
            if text is not None:
                self.store.set_system_prompt(chat_id, text.strip())
                self.notify("System prompt saved: it applies from the next message.")

        self.push_screen(TextDialog(f"System prompt for “{self.chat.title}”", self.chat.system_prompt), done)

    # ---- clipboard, panes, focus -------------------------------------------

    def _last_answer_text(self) -> str | None:
        answer = self.main_screen.query_one(ChatLog).last_answer()
        if self.generating and answer is not None:  # the one streaming now
            return answer.text if answer.text.strip() else None
        if self.chat is None:
            return None
        for message in reversed(self.store.messages(self.chat.id)):
            if message.role == "assistant" and message.content.strip():
                return message.content
        return None

    def action_copy_answer(self) -> None:
        text = self._last_answer_text()
        if not text:
            self.notify("No answer to copy yet.", severity="warning")
            return
        self.copy_to_clipboard(text)
        self.notify(f"Copied the last answer ({len(text)} characters).")

    def action_copy_code(self, number: int | None = None) -> None:
        """Copy code block `number` (1 = first; None = the last) of the last answer."""
        text = self._last_answer_text()
        blocks = code_blocks(text) if text else []
        if not blocks:
            self.notify("The last answer has no code block.", severity="warning")
            return
        if number is not None and not 1 <= number <= len(blocks):
            self.notify(f"The last answer has {len(blocks)} code block(s).", severity="warning")
            return
        index = len(blocks) if number is None else number
        code = blocks[index - 1]
        self.copy_to_clipboard(code)
        self.notify(f"Copied code block {index} of {len(blocks)} ({len(code.splitlines())} lines).")

    def action_toggle_thinking(self) -> None:
        for answer in reversed(self.main_screen.query(AssistantMessage).nodes):
            if answer.toggle_thinking():
                return
        self.notify("No answer here has thinking to show.", severity="warning")

    def action_set_thinking(self, enable: bool) -> None:
        try:
            self.session.set_thinking(enable)
        except ChatError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.notify(f"Thinking {'on' if enable else 'off'} for this chat, from the next message.")

    def action_search(self) -> None:
        def done(picked: tuple[int, int] | None) -> None:
            if picked is not None:
                chat_id, message_id = picked
                self._in_background(self._open_at(chat_id, message_id), "open the chat")

        self.push_screen(SearchScreen(lambda words: self.store.search(words)), done)

    async def _open_at(self, chat_id: int, message_id: int) -> None:
        if self.chat is None or self.chat.id != chat_id:
            await self._stop_answer()
        await self.open_chat(chat_id, at_message=message_id)

    def on_prompt_input_edit_last_requested(self, event: PromptInput.EditLastRequested) -> None:
        self.action_edit_last()

    def action_edit_last(self) -> None:
        last = self.session.last_user_draft()
        if last is None:
            self.notify("No message to edit yet.", severity="warning")
            return
        prompt = self.main_screen.query_one(PromptInput)
        prompt.start_edit(last)
        prompt.focus()
        self.notify("Editing your last message: Enter replaces it and its answer.")

    def on_prompt_input_completions(self, event: PromptInput.Completions) -> None:
        shown = ", ".join(event.candidates[:12]) + (" …" if len(event.candidates) > 12 else "")
        self.notify(shown, title=f"{len(event.candidates)} files", timeout=4)

    def action_toggle_heatmap(self) -> None:
        self._toggle_pane("#heatmap")

    def action_toggle_memory(self) -> None:
        self._toggle_pane("#memory")

    def _toggle_pane(self, selector: str) -> None:
        pane = self.main_screen.query_one(selector)
        pane.display = not pane.display
        side = self.main_screen.query_one("#side")
        side.display = any(child.display for child in side.children)
        if pane.display:
            self.refresh_telemetry()

    def action_focus_chat(self) -> None:
        self.main_screen.query_one(ChatLog).focus()

    def action_focus_prompt(self) -> None:
        self.main_screen.query_one(PromptInput).focus()

    def action_scroll_chat(self, direction: int) -> None:
        log = self.main_screen.query_one(ChatLog)
        if direction < 0:
            log.scroll_page_up(animate=False)
        else:
            log.scroll_page_down(animate=False)

    def action_set_theme(self, name: str) -> None:
        if name in self.available_themes:
            self.theme = name

    # ---- telemetry ---------------------------------------------------------

    def refresh_telemetry(self, now: float | None = None) -> TelemetrySnapshot | None:
        """Poll the engine once and redraw the side panes (the timer calls this)."""
        try:
            heatmap = self.main_screen.query_one(ExpertHeatmap)
            memory = self.main_screen.query_one(MemoryPane)
        except NoMatches:  # the app is shutting down
            return None
        snapshot = self._snapshot_source()
        if heatmap.display:
            heatmap.show(snapshot)
        view = self._memory_history.update(snapshot, self._clock() if now is None else now)
        if memory.display:
            memory.show(view)
        return snapshot

    # ---- model loading -----------------------------------------------------

    def action_load_model(self) -> None:
        def done(path: str | None) -> None:
            if path:
                self.start_load(path)

        self.push_screen(
            InputDialog(
                "Load model folder",
                self.model_dir or "",
                placeholder="/path/to/mlx-community-model",
                hint="An MoE model folder with config.json · Esc cancels",
            ),
            done,
        )

    def start_load(self, model_dir: str | None) -> Worker:
        """Load a model in the background (the UI stays usable; progress and errors shown)."""
        return self._load(model_dir)

    def _progress_from_thread(self, progress: LoadProgress) -> None:
        """on_progress for the engine and the demo build (called on their threads)."""
        self.post_message(LoadProgressed(progress.fraction, progress.message))

    def on_load_progressed(self, message: LoadProgressed) -> None:
        if self.model_state == "loading":
            self.main_screen.query_one(ModelStatus).show_progress(message.fraction, message.text)

    @work(exclusive=True, group="load")
    async def _load(self, model_dir: str | None) -> None:
        await self._stop_answer()
        status = self.main_screen.query_one(ModelStatus)
        self.model_info = None
        self.model_state = "loading"
        status.show_progress(0.0, "starting")
        self._update_top_bar()
        try:
            if self._resolve_model is not None:
                path = await asyncio.to_thread(self._resolve_model, model_dir, self._progress_from_thread)
            elif model_dir:
                path = Path(model_dir)
            else:
                raise ValueError("no model folder was given")
            future = await asyncio.to_thread(self.engine.load, str(path), self.cache_bytes, self._progress_from_thread)
            info = await asyncio.wrap_future(future)
        except Exception as exc:  # every load failure is shown, the app stays usable
            reason = one_line(exc)
            self.model_state = "error"
            self.last_load_error = reason
            status.show_error(reason, self.key_for("load_model"))
            self.notify(reason, title="Model not loaded", severity="error", timeout=10)
            self._update_top_bar()
            return
        self.model_info = info
        self.model_dir = str(path)
        self.model_state = "ready"
        self.last_load_error = None
        status.hide()
        self._update_top_bar()
        self.refresh_telemetry()

    # ---- answering ---------------------------------------------------------

    def _can_answer(self) -> bool:
        """Whether a new answer may start now; tells the user why not."""
        if self.chat is None:
            return False
        if self.generating:
            self.notify(f"Still answering: {self.key_for('cancel')} stops it.", severity="warning")
            return False
        if self.model_state != "ready":
            why = "is still loading" if self.model_state == "loading" else "is loaded"
            hint = "" if self.model_state == "loading" else f": {self.key_for('load_model')} loads a model folder"
            self.notify(f"No model {why}{hint}. Your message is kept in the box.", severity="warning")
            return False
        return True

    def on_prompt_input_submitted(self, event: PromptInput.Submitted) -> None:
        text = event.text.strip()
        if not text or not self._can_answer():
            return
        try:
            message, _ = expand_attachments(text, limit_bytes=self.attach_limit)
        except AttachmentError as exc:
            self.notify(
                f"{exc} Nothing was sent: your message is kept in the box.",
                title="Attachment",
                severity="error",
                timeout=10,
            )
            return
        editing = event.prompt.editing
        event.prompt.clear()
        if editing:
            self._start_answer(
                lambda on_part: self.session.edit_last(message, on_part), question=message, replace_question=True
            )
        else:
            self._start_answer(lambda on_part: self.session.send(message, on_part), question=message)

    def action_retry(self) -> None:
        if not self._can_answer():
            return
        if self.session.last_user_text() is None:
            self.notify("Nothing to regenerate yet: send a message first.", severity="warning")
            return
        self._start_answer(self.session.retry)

    def _start_answer(
        self, start: Callable[..., Turn], question: str | None = None, replace_question: bool = False
    ) -> None:
        """Run `start(on_part)` (send, edit or retry) in the answer worker."""
        self.generating = True
        self.refresh_bindings()
        self._update_top_bar()
        self._answer_worker = self._answer(start, question, replace_question)

    @work(exclusive=True, group="answer")
    async def _answer(self, start: Callable[..., Turn], question: str | None, replace_question: bool) -> None:
        log = self.main_screen.query_one(ChatLog)
        try:
            widget = AssistantMessage()

            def on_part(kind: str, text: str) -> None:
                if kind == THINKING:
                    widget.write_thinking(text)
                else:
                    widget.write(text)

            turn = start(on_part)  # commits the question (or drops what it replaces)
            self._update_top_bar()  # the first message names the chat
            await log.drop_last_turn(
                keep_question=question is None or not replace_question, only_if=question is None or replace_question
            )
            if question is not None:
                await log.add(UserMessage(question))
            widget.message_id = turn.answer_id
            await log.add(widget)
            widget.start_stream()
            result = await turn.run_async()
            await widget.finish(result.status, result.note())
            if result.status == "error":
                self.notify(result.note(), title="Answer failed", severity="error", timeout=10)
            if result.save_error:
                self.notify(result.save_error, title="Not saved", severity="error", timeout=10)
        except ChatError as exc:
            self.notify(str(exc), severity="warning")
        except Exception as exc:  # the store or the screen failed: tell, keep running
            self.notify(f"The answer could not be saved or shown: {one_line(exc)}", severity="error", timeout=10)
        finally:
            self.generating = False
            self.refresh_bindings()
            self._update_top_bar()

    def action_cancel_answer(self) -> None:
        if self.generating:
            self.engine.cancel()

    async def action_quit(self) -> None:
        if self.generating:
            self.engine.cancel()
        self.exit()
