"""Screenshots: thinking live, folded and expanded; the search screen; editing the last message.

Update after an intended visual change with: pytest tests/app --snapshot-update
"""

from __future__ import annotations

from app_helpers import ready, synthetic_snapshot

from engine.fake import FakeEngine
from outlier_tui.app.chat_view import AssistantMessage, ChatLog
from outlier_tui.app.prompt_input import PromptInput

SIZE = (100, 30)
THINKING = (
    "The user asks how to reverse a string. Slicing with a step of -1 is the "
    "idiomatic way; reversed() plus join also works but is longer."
)
ANSWER = "Use slicing:\n\n```python\ns[::-1]\n```"


def _app(make_app, store, **kw):
    chat = store.create_chat("Reverse a string")
    store.add_message(chat.id, "user", "How do I reverse a string in Python?")
    answer = store.add_message(chat.id, "assistant", "", status="partial")
    store.update_message(answer, ANSWER, "complete", thinking=THINKING)
    snapshot = synthetic_snapshot()
    return make_app(
        FakeEngine(),
        model_dir="/models/Qwen3-30B-A3B-4bit",
        theme="outlier-dark",
        chat=str(chat.id),
        snapshot_source=lambda: snapshot,
        **kw,
    )


async def _settle(pilot) -> None:
    await ready(pilot)
    pilot.app.query_one(PromptInput).cursor_blink = False
    pilot.app.refresh_telemetry(now=0.0)
    await pilot.pause()


def test_thinking_folded(snap_compare, make_app, store):
    assert snap_compare(_app(make_app, store), terminal_size=SIZE, run_before=_settle)


def test_thinking_expanded(snap_compare, make_app, store):
    async def run_before(pilot) -> None:
        await _settle(pilot)
        await pilot.press("f8")
        await pilot.pause()

    assert snap_compare(_app(make_app, store), terminal_size=SIZE, run_before=run_before)


def test_thinking_live(snap_compare, make_app, store):
    """An answer still thinking: the block is open and dimmed, the note says generating."""

    async def run_before(pilot) -> None:
        await _settle(pilot)
        log = pilot.app.query_one(ChatLog)
        widget = AssistantMessage()
        await log.add(widget)
        widget.start_stream()
        widget.write_thinking("Second question. Let me think about what join does")
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(_app(make_app, store), terminal_size=SIZE, run_before=run_before)


def test_search_screen(snap_compare, make_app, store):
    async def run_before(pilot) -> None:
        await _settle(pilot)
        await pilot.press("f10")
        await pilot.press(*"slicing")
        await pilot.pause()

    assert snap_compare(_app(make_app, store), terminal_size=SIZE, run_before=run_before)


def test_editing_the_last_message(snap_compare, make_app, store):
    async def run_before(pilot) -> None:
        await _settle(pilot)
        await pilot.press("up")
        await pilot.pause()
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(_app(make_app, store), terminal_size=SIZE, run_before=run_before)
