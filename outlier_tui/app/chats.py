"""Saved chats: which one opens first, opening, new, list, rename, delete, export, the
system prompt, search, and the per-chat thinking switch.

Navigation runs as a worker, so waiting for a stopping answer never freezes the UI.
"""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from textual.content import Content

from outlier_tui.app.answers import Answering
from outlier_tui.app.bindings import key_label
from outlier_tui.app.chat_view import AssistantMessage, ChatLog, UserMessage
from outlier_tui.app.panes import Panes
from outlier_tui.app.prompt_input import PromptInput
from outlier_tui.app.screens import ChatListScreen, ConfirmDialog, InputDialog, SearchScreen, TextDialog
from outlier_tui.app.text_tools import export_path
from outlier_tui.core.chat import ChatError, chat_from_option
from outlier_tui.core.format import one_line
from outlier_tui.store import StoredMessage


class ChatActions(Answering, Panes):
    """Chat actions; switching away from a chat first stops its answer (it is saved)."""

    async def open_initial_chat(self) -> None:
        """The chat the app starts on: --chat's, else reuse the newest if empty, else a new one."""
        requested = self._requested_chat
        chat = chat_from_option(self.store, requested)  # ChatError: run_app refuses it before the screen
        if chat is None and requested is None:
            chats = self.store.list_chats()
            if chats and not self.store.messages(chats[0].id):
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
        await log.show(widgets, welcome=self.welcome())
        if at_message is not None:
            log.show_message(at_message)
        self.update_top_bar()

    def welcome(self) -> Content:
        """What an empty chat says: the keys to start with, and on the demo model what it is
        and how to load a real one."""

        def key(binding_id: str) -> str:
            return key_label(self.key_for(binding_id))

        parts: list[str | tuple[str, str]] = [("Welcome to Outlier.\n\n", "bold")]
        if self.demo_model:
            parts += [
                "This is the demo model: SmolLM2-135M upcycled into a toy MoE, built on the first run. "
                "It shows the engine streaming experts from the disk; do not expect good answers.\n\n",
                "For a real model: ",
                (key("load_model"), "bold"),
                " loads an mlx-community MoE folder, or start with ",
                ("outlier --model DIR", "bold"),
                ".\n\n",
            ]
        parts += [
            (key("send"), "bold"),
            " sends, ",
            (key("newline"), "bold"),
            " starts a new line, ",
            ("@path", "bold"),
            " attaches a file. ",
            ("Ctrl+P", "bold"),
            " lists every action; ",
            (key("help"), "bold"),
            " shows the keys.",
        ]
        return Content.assemble(*parts)

    @staticmethod
    def _message_widget(message: StoredMessage) -> UserMessage | AssistantMessage:
        if message.role == "user":
            return UserMessage(message.content, message.id)
        return AssistantMessage(message.content, message.status, thinking=message.thinking, message_id=message.id)

    def _in_background(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run `coro` as the one navigation worker; a failure is told, the app keeps running."""

        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:  # e.g. the database went away: tell, keep running
                self.notify(f"Could not {name}: {one_line(exc)}", severity="error", timeout=10)

        self.run_worker(guarded(), name=name, group="navigate", exclusive=True)

    def action_new_chat(self) -> None:
        self._in_background(self._new_chat(), "start a new chat")

    async def _new_chat(self) -> None:
        await self.stop_answer()
        chat = self.session.new_saved_chat()
        await self.open_chat(chat.id)
        self.action_focus_prompt()

    def action_open_chat(self, chat_id: int) -> None:
        self._in_background(self._switch_chat(chat_id), "switch chats")

    async def _switch_chat(self, chat_id: int) -> None:
        await self.stop_answer()
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
            if title is None:
                return
            try:
                self.session.rename(title, chat_id)
            except ChatError as exc:
                self.notify(str(exc), severity="warning")
                return
            self.update_top_bar()

        self.push_screen(InputDialog("Rename chat", chat.title), done)

    def action_trim_oldest(self) -> None:
        self._in_background(self._trim_oldest(), "trim the chat")

    async def _trim_oldest(self) -> None:
        await self.stop_answer()
        try:
            gone = self.session.trim_oldest()
        except ChatError as exc:
            self.notify(str(exc), severity="warning")
            return
        if self.chat is not None:
            await self.open_chat(self.chat.id)
        self.notify(f"Dropped the oldest turn ({gone} messages). F5 answers the last message again.")

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
            await self.stop_answer()
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
                self.export_chat(chat.id, Path(path))

        self.push_screen(InputDialog("Export chat to Markdown file", str(default)), done)

    def export_chat(self, chat_id: int, path: Path) -> None:
        """Write a chat as Markdown to `path`, telling the user where (or why not)."""
        try:
            written = self.session.export(path, chat_id)
        except ChatError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"Exported to {written}")

    def action_system_prompt(self) -> None:
        if self.chat is None:
            return
        chat_id = self.chat.id

        def done(text: str | None) -> None:
            if text is not None and self.session.chat_id == chat_id:
                self.session.set_system_prompt(text)
                self.notify("System prompt saved: it applies from the next message.")

        self.push_screen(TextDialog(f"System prompt for “{self.chat.title}”", self.session.system_prompt), done)

    def action_search(self) -> None:
        def done(picked: tuple[int, int] | None) -> None:
            if picked is not None:
                chat_id, message_id = picked
                self._in_background(self._open_at(chat_id, message_id), "open the chat")

        self.push_screen(SearchScreen(lambda words: self.store.search(words)), done)

    async def _open_at(self, chat_id: int, message_id: int) -> None:
        if self.chat is None or self.chat.id != chat_id:
            await self.stop_answer()
        await self.open_chat(chat_id, at_message=message_id)

    def action_set_thinking(self, enable: bool) -> None:
        try:
            self.session.set_thinking(enable)
        except ChatError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.notify(f"Thinking {'on' if enable else 'off'} for this chat, from the next message.")
