"""Pilot tests: thinking live then folded, edit and retry, search, @file, copy block N."""

from __future__ import annotations

from app_helpers import ready, send, wait_until
from textual.widgets import Collapsible, OptionList

from engine.fake import FakeEngine
from outlier_tui.app.chat_view import AssistantMessage, ChatLog, UserMessage
from outlier_tui.app.prompt_input import PromptInput
from outlier_tui.app.screens import SearchScreen

THINKING = " ".join(f"step{i}" for i in range(60))
REPLY = (
    f"<think>\n{THINKING}\n</think>\n\n"
    + " ".join(f"ans{i}" for i in range(40))
    + "\n\n```python\nfirst()\n```\n\n```sh\nsecond\n```\n"
)


async def test_thinking_shows_live_then_folds_when_the_answer_starts(make_app, store):
    engine = FakeEngine(script=[REPLY], token_delay=0.01)
    app = make_app(engine)
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(pilot)
        await send(pilot, "think first", wait=False)
        await wait_until(lambda: app.query_one(ChatLog).last_answer() is not None)
        answer = app.query_one(ChatLog).last_answer()
        await wait_until(lambda: "step5 " in answer.thinking)
        block = answer.thinking_block
        assert not block.collapsed and block.display and answer.text == ""
        await wait_until(lambda: "step10" in str(answer.query_one(".thinking-text").render()))
        await wait_until(lambda: "ans3" in answer.text)
        assert block.collapsed  # folded once the answer streams
        await app.workers.wait_for_complete()
        await pilot.pause()
        stored = store.messages(app.chat.id)[-1]
        assert stored.thinking == THINKING and stored.content.startswith("ans0 ")
        assert "<think>" not in answer.text and "step1" not in answer.text
        await pilot.press("f8")
        assert not block.collapsed
        await pilot.press("f8")
        assert block.collapsed


async def test_stored_thinking_is_folded_and_palette_expands_it(make_app, store):
    chat = store.create_chat("Old")
    store.add_message(chat.id, "user", "q")
    answer_id = store.add_message(chat.id, "assistant", "", status="partial")
    store.update_message(answer_id, "the answer", "complete", thinking="hidden reasoning")
    app = make_app(chat=str(chat.id))
    async with app.run_test() as pilot:
        await ready(pilot)
        answer = app.query_one(ChatLog).last_answer()
        assert answer.thinking_block.collapsed and answer.thinking_block.display
        assert "toggle_thinking" in {action for _, _, action in app.palette_commands()}
        await app.run_action("toggle_thinking")
        assert not answer.thinking_block.collapsed
        plain = AssistantMessage("no thinking")
        await app.query_one(ChatLog).add(plain)
        assert not plain.query_one(Collapsible).display


async def test_thinking_switch_in_the_palette_is_kept_per_chat(make_app, store):
    engine = FakeEngine(script=[REPLY])
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        assert "set_thinking(False)" in {a for _, _, a in app.palette_commands()}
        await app.run_action("set_thinking(False)")
        assert store.get_chat(app.chat.id).enable_thinking is False
        assert "set_thinking(True)" in {a for _, _, a in app.palette_commands()}
        await send(pilot, "no thinking please")
        assert engine.requests[-1][1].enable_thinking is False
        assert app.query_one(ChatLog).last_answer().thinking == ""


async def test_up_on_empty_box_edits_the_last_message(make_app, store):
    engine = FakeEngine(script=["first answer", "second answer", "edited answer"])
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "q1")
        await send(pilot, "q2 with a typo")
        prompt = app.query_one(PromptInput)
        prompt.focus()
        await pilot.press("up")
        assert prompt.text == "q2 with a typo" and prompt.editing
        for _ in "typo":
            await pilot.press("backspace")
        prompt.insert("fix")
        await pilot.press("enter")
        await wait_until(lambda: len(engine.requests) == 3 and not app.generating)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not prompt.editing
        assert [m.content for m in store.messages(app.chat.id)] == [
            "q1",
            "first answer",
            "q2 with a fix",
            "edited answer",
        ]
        assert [w.text for w in app.query(UserMessage)] == ["q1", "q2 with a fix"]
        assert [w.text for w in app.query(AssistantMessage)] == ["first answer", "edited answer"]
        assert [m["content"] for m in engine.requests[-1][0]] == ["q1", "first answer", "q2 with a fix"]
        prompt.insert("line one\nline two")
        await pilot.press("up")  # Up in a box with text moves the cursor, as usual
        assert prompt.text == "line one\nline two" and prompt.cursor_location[0] == 0


async def test_f5_regenerates_the_last_answer(make_app, store):
    engine = FakeEngine(script=["old answer", "new answer"])
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "question")
        await pilot.press("f5")
        await wait_until(lambda: not app.generating and len(engine.requests) == 2)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert [w.text for w in app.query(AssistantMessage)] == ["new answer"]
        assert [m.content for m in store.messages(app.chat.id)] == ["question", "new answer"]
        assert engine.requests[1][0] == engine.requests[0][0]


async def test_search_opens_the_chat_at_the_match(make_app, store):
    old = store.create_chat("Disks")
    store.add_message(old.id, "user", "How fast is the SSD?")
    hit = store.add_message(old.id, "assistant", "About 5 GB/s on a Mac mini.")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        assert app.chat.id != old.id
        await pilot.press("f10")
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"mac min")
        hits = app.screen.query_one(OptionList)
        await wait_until(lambda: hits.option_count == 1)
        prompt = hits.get_option_at_index(0).prompt
        assert "on a Mac mini." in prompt.plain  # matches highlighted, not bracketed
        assert [prompt.plain[s.start : s.end] for s in prompt.spans if "reverse" in str(s.style)] == ["Mac", "mini"]
        await pilot.press("enter")
        await wait_until(lambda: app.chat.id == old.id)
        await app.workers.wait_for_complete()
        await pilot.pause()
        matched = [w for w in app.query_one(ChatLog).children if w.has_class("-match")]
        assert [getattr(w, "message_id", None) for w in matched] == [hit]


async def test_attachment_is_sent_as_a_fenced_block_or_refused(make_app, store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "util.py").write_text("def f():\n    pass\n")
    (tmp_path / "data.bin").write_bytes(b"\0\1")
    engine = FakeEngine(script=["ok"])
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        prompt = app.query_one(PromptInput)
        prompt.focus()
        prompt.insert("look at @ut")
        await pilot.press("tab")
        assert prompt.text == "look at @util.py"
        await send(pilot, "")
        assert engine.requests[0][0][-1]["content"] == (
            "look at @util.py\n\nutil.py\n```python\ndef f():\n    pass\n```"
        )
        await pilot.press("up")  # editing gets back what was typed, not the attached file
        assert prompt.text == "look at @util.py" and prompt.editing
        prompt.clear()
        prompt.insert("and @data.bin")
        await pilot.press("enter")
        await pilot.pause()
        assert len(engine.requests) == 1 and prompt.text == "and @data.bin"  # kept, not sent


async def test_copy_code_block_n(make_app):
    app = make_app(FakeEngine(script=[REPLY]))
    copied = []
    async with app.run_test() as pilot:
        await ready(pilot)
        app.copy_to_clipboard = copied.append
        await send(pilot, "code please")
        await pilot.press("alt+1")
        await pilot.press("alt+2")
        await pilot.press("alt+3")  # there is no third block: nothing copied
        assert copied == ["first()\n", "second\n"]
        assert "copy_code(2)" in {a for _, _, a in app.palette_commands()}
