"""Sending a message and streaming the answer: the message box's events, retry, edit,
stop, and the one answer worker.

The worker is exclusive and async: it awaits the engine's event stream, so the UI
never blocks on the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from textual import work
from textual.worker import Worker, WorkerCancelled, WorkerFailed

from engine.reasoning import THINKING
from outlier_tui.app.base import AppBase
from outlier_tui.app.chat_view import AssistantMessage, ChatLog, UserMessage
from outlier_tui.app.model_state import ModelState
from outlier_tui.app.prompt_input import PromptInput
from outlier_tui.core.attachments import AttachmentError, expand_attachments
from outlier_tui.core.chat import ChatError, Turn
from outlier_tui.core.format import one_line


class Answering(AppBase):
    """Owns the answer worker; `generating` is true while it streams."""

    _answer_worker: Worker | None = None

    def watch_generating(self) -> None:
        self.update_top_bar()

    def _can_answer(self) -> bool:
        """Whether a new answer may start now; tells the user why not."""
        if self.chat is None:
            return False
        if self.generating:
            self.notify(f"Still answering: {self.key_for('cancel')} stops it.", severity="warning")
            return False
        if self.model_state is not ModelState.READY:
            if self.model_state is ModelState.LOADING:
                why = "The model is still loading: send again once the bar says ready."
            else:
                why = f"No model is loaded: {self.key_for('load_model')} loads a model folder."
            self.notify(f"{why} Your message is kept in the box.", severity="warning")
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

    def on_prompt_input_completions(self, event: PromptInput.Completions) -> None:
        shown = ", ".join(event.candidates[:12]) + (" …" if len(event.candidates) > 12 else "")
        self.notify(shown, title=f"{len(event.candidates)} files", timeout=4)

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
            self.update_top_bar()  # the first message names the chat
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

    async def stop_answer(self) -> None:
        """Cancel a running answer and wait until it is saved (the engine stops between tokens)."""
        worker = self._answer_worker
        if worker is not None and not worker.is_finished:
            self.engine.cancel()
            with contextlib.suppress(WorkerCancelled, WorkerFailed):
                await worker.wait()

    def action_toggle_thinking(self) -> None:
        for answer in reversed(self.main_screen.query(AssistantMessage).nodes):
            if answer.toggle_thinking():
                return
        self.notify("No answer here has thinking to show.", severity="warning")

    def action_cancel_answer(self) -> None:
        if self.generating:
            self.engine.cancel()

    async def action_quit(self) -> None:
        if self.generating:
            self.engine.cancel()
        self.exit()
