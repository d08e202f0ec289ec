"""Copying the last answer, or a code block of it, to the clipboard (OSC 52: works over SSH)."""

from __future__ import annotations

from outlier_tui.app.base import AppBase
from outlier_tui.app.chat_view import ChatLog
from outlier_tui.core.code_blocks import code_blocks


class ClipboardActions(AppBase):
    """Copy actions; the last answer is the one streaming now, else the newest saved one."""

    def last_answer_text(self) -> str | None:
        """The last answer's text, or None if there is none (or it is blank)."""
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
        text = self.last_answer_text()
        if not text:
            self.notify("No answer to copy yet.", severity="warning")
            return
        self.copy_to_clipboard(text)
        self.notify(f"Copied the last answer ({len(text)} characters).")

    def action_copy_code(self, number: int | None = None) -> None:
        """Copy code block `number` (1 = first; None = the last) of the last answer."""
        text = self.last_answer_text()
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
