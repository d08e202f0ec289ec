"""A gpt-oss (harmony channels) reply in the app: analysis shows as thinking, final as the answer."""

from __future__ import annotations

from app_helpers import ready, send

from engine.fake import FakeEngine
from outlier_tui.app.chat_view import ChatLog

HARMONY = (
    "<|channel|>analysis<|message|>The user greets me. Reply briefly.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello from gpt-oss!<|return|>"
)


async def test_harmony_channels_show_as_thinking_and_answer(make_app, store):
    app = make_app(FakeEngine(script=[HARMONY]))
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "hi")
        await app.workers.wait_for_complete()
        await pilot.pause()
        answer = app.query_one(ChatLog).last_answer()
        assert answer.text == "Hello from gpt-oss!"
        assert answer.thinking == "The user greets me. Reply briefly."
        stored = store.messages(app.chat.id)[-1]
        assert (stored.content, stored.thinking) == ("Hello from gpt-oss!", "The user greets me. Reply briefly.")
