"""The command palette (Ctrl+P): every binding, then themes, thinking, code blocks, chats.

Entries come from the app's bindings (bindings.py: description = title, tooltip =
help, with the key as the user's keymap has it) and reach Textual's palette as
system commands, next to Textual's own (theme picker, keys, screenshot).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from outlier_tui.app.bindings import COMMAND_BINDINGS, UNBOUND_COMMANDS, key_label
from outlier_tui.app.clipboard import ClipboardActions
from outlier_tui.app.prompt_input import PromptInput
from outlier_tui.app.screens import KeysScreen
from outlier_tui.core.code_blocks import code_blocks

MAX_LISTED = 50  # code blocks and chats listed at most


class PaletteCommands(ClipboardActions):
    """Builds the palette's entries fresh each time it opens (chats and answers change)."""

    def palette_commands(self) -> list[tuple[str, str, str]]:
        """(title, help, action) for every palette entry of the app."""
        entries = []
        for binding in COMMAND_BINDINGS:
            key = self.key_for(binding.id or "")
            help_text = binding.tooltip or binding.description
            entries.append((binding.description, f"{help_text}  [{key}]" if key else help_text, binding.action))
        entries.extend(UNBOUND_COMMANDS)
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
        answer = self.last_answer_text() or ""
        for number, block in enumerate(code_blocks(answer)[:MAX_LISTED], 1):
            first = next((ln.strip() for ln in block.splitlines() if ln.strip()), "")
            key = self.key_for(f"copy_code_{number}")
            entries.append(
                (
                    f"Copy code block {number}: {first[:40]}",
                    "From the last answer (OSC 52)" + (f"  [{key}]" if key else ""),
                    f"copy_code({number})",
                )
            )
        for chat in self.store.list_chats()[:MAX_LISTED]:
            entries.append((f"Open chat: {chat.title}", f"Chat #{chat.id}", f"open_chat({chat.id})"))
        return entries

    def key_rows(self) -> list[tuple[str, str]]:
        """(keys, action) for the keys screen: the message box's, then the app's (keymap applied)."""
        rows = []
        for binding in [*PromptInput.BINDINGS, *COMMAND_BINDINGS]:
            if isinstance(binding, Binding) and binding.id:
                keys = self.keymap.get(binding.id, binding.key).split(",")
                rows.append((" / ".join(key_label(k.strip()) for k in keys), binding.description))
        rows.append(("Alt+1 … Alt+9", "Copy code block N of the last answer"))
        rows.append(("Ctrl+P", "Command palette: every action, theme and chat by name"))
        return rows

    def action_show_keys(self) -> None:
        if not isinstance(self.screen, KeysScreen):
            self.push_screen(KeysScreen(self.key_rows()))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for title, help_text, action in self.palette_commands():
            # run_action, not the method: check_action still decides (no chat actions under a dialog)
            yield SystemCommand(title, help_text, partial(self.run_action, action))
