"""The conversation core against the fake engine: one behaviour for every front-end."""

from __future__ import annotations

import asyncio
import dataclasses
import signal

import pytest

from engine.api import GenerationParams
from engine.fake import FakeEngine
from outlier_tui.core.chat import (
    DEFAULT_TITLE,
    TITLE_CHARS,
    ChatError,
    ChatSession,
    one_off_turn,
    title_from,
)
from outlier_tui.store import ConversationStore

REPLY = "<think>\nThe user greets me.\n</think>\n\nHello there, friend."


@pytest.fixture
def store(tmp_path):
    s = ConversationStore(tmp_path / "chats.sqlite3")
    yield s
    s.close()


def _engine(script=None, **kw) -> FakeEngine:
    engine = FakeEngine(script=script, **kw)
    engine.load("fake").result()
    return engine


class Parts(list):
    def __call__(self, kind, text):
        self.append((kind, text))

    def text(self, kind):
        return "".join(t for k, t in self if k == kind)


def test_send_streams_thinking_and_answer_apart_and_stores_both(store):
    session = ChatSession(_engine([REPLY]), store)
    parts = Parts()
    result = session.send("hi", parts).run()
    assert (result.status, result.text, result.thinking) == ("complete", "Hello there, friend.", "The user greets me.")
    assert parts.text("thinking") == "The user greets me."
    assert parts.text("answer") == "Hello there, friend."
    user, answer = store.messages(session.chat_id)
    assert (user.content, answer.content, answer.thinking, answer.status) == (
        "hi",
        "Hello there, friend.",
        "The user greets me.",
        "complete",
    )
    assert store.get_chat(session.chat_id).title == "hi"
    assert "tok/s" in result.note() and session.last_stats is result.stats


def test_thinking_is_not_sent_back_unless_the_template_renders_it(store):
    engine = _engine([REPLY, "ok"])
    session = ChatSession(engine, store, model_info=engine.snapshot().model)
    session.send("one", Parts()).run()
    session.send("two", Parts()).run()
    assert engine.requests[1][0][1] == {"role": "assistant", "content": "Hello there, friend."}
    session.model_info = dataclasses.replace(session.model_info, template_keeps_thinking=True)
    session.retry(Parts()).run()
    assert engine.requests[2][0][1]["reasoning_content"] == "The user greets me."


def test_one_title_rule():
    assert title_from("\n  How do I sort a dict?\nmore") == "How do I sort a dict?"
    long = title_from("x" * 100)
    assert len(long) == TITLE_CHARS and long.endswith("…")
    assert title_from("   ") == DEFAULT_TITLE


def test_answer_is_saved_as_it_grows_on_one_interval(store):
    ticks = iter(range(1000))
    engine = _engine([" ".join(f"w{i}" for i in range(10))])
    session = ChatSession(engine, store, clock=lambda: next(ticks), save_every=3)
    seen = []
    turn = session.send("go", lambda kind, text: seen.append(store.messages(session.chat_id)[-1].content))
    turn.run()
    # A save every third clock tick: the stored text lags what streamed by < 3 pieces.
    assert turn.saves == 4  # three while streaming, one at the end
    assert all(len(s.split()) >= i - 3 for i, s in enumerate(seen))
    assert store.messages(session.chat_id)[-1].status == "complete"


def test_cancel_keeps_the_text_and_marks_it(store):
    engine = _engine([" ".join(f"w{i}" for i in range(500))], token_delay=0.002)
    session = ChatSession(engine, store)
    turn = session.send("long", lambda kind, text: engine.cancel())
    result = turn.run()
    assert result.status == "cancelled" and result.text.startswith("w0")
    assert store.messages(session.chat_id)[-1].status == "cancelled"
    assert result.note() == "stopped: the text above is what was generated"


def test_engine_failure_is_one_line_and_saved(store):
    session = ChatSession(_engine(["a b c d"], fail_generate_after=2), store)
    result = session.send("x", Parts()).run()
    assert result.status == "error" and "\n" not in result.error
    assert store.messages(session.chat_id)[-1].status == "error"


def test_async_run_cancelled_by_the_app_closing_saves(store):
    engine = _engine([" ".join(f"w{i}" for i in range(2000))], token_delay=0.001)
    session = ChatSession(engine, store)

    async def main():
        task = asyncio.ensure_future(session.send("q", Parts()).run_async())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    answer = store.messages(session.chat_id)[-1]
    assert answer.status == "cancelled" and answer.content.startswith("w0")


def test_a_signal_raised_inside_the_async_answer_saves_it_as_stopped(store):
    """termination.install() raises Terminated in whatever the main thread runs: in the app
    that can be the answer's own task, which must save the text as stopped, not partial."""
    from outlier_tui.termination import Terminated

    engine = _engine([" ".join(f"w{i}" for i in range(2000))], token_delay=0.001)
    session = ChatSession(engine, store)

    def on_part(kind, text):
        if text.strip() == "w20":
            raise Terminated(signal.SIGTERM)

    async def main():
        await session.send("q", on_part).run_async()

    with pytest.raises(Terminated):
        asyncio.run(main())
    answer = store.messages(session.chat_id)[-1]
    assert answer.status == "cancelled" and answer.content.startswith("w0 w1 ")


def test_retry_replaces_the_last_answer(store):
    engine = _engine(["first answer", "second answer"])
    session = ChatSession(engine, store)
    session.send("question", Parts()).run()
    result = session.retry(Parts()).run()
    assert result.text == "second answer"
    assert [(m.role, m.content) for m in store.messages(session.chat_id)] == [
        ("user", "question"),
        ("assistant", "second answer"),
    ]
    assert engine.requests[1][0] == engine.requests[0][0]  # same conversation sent again


def test_edit_replaces_the_last_question_and_its_answer(store):
    engine = _engine(["a1", "a2", "a3"])
    session = ChatSession(engine, store)
    session.send("q1", Parts()).run()
    session.send("q2 with a typo", Parts()).run()
    assert session.last_user_text() == "q2 with a typo"
    session.edit_last("q2 fixed", Parts()).run()
    assert [m.content for m in store.messages(session.chat_id)] == ["q1", "a1", "q2 fixed", "a3"]
    assert [m["content"] for m in engine.requests[2][0]] == ["q1", "a1", "q2 fixed"]


def test_editing_the_first_message_renames_a_chat_it_named(store):
    session = ChatSession(_engine(["a", "b", "c"]), store)
    session.send("Sort a dcit", Parts()).run()
    session.edit_last("Sort a dict", Parts()).run()
    assert session.chat.title == "Sort a dict"
    store.rename_chat(session.chat_id, "My title")
    session.edit_last("Sort a dict by value", Parts()).run()
    assert session.chat.title == "My title"  # a title the user gave is kept


def test_nothing_to_retry_is_a_one_line_error(store):
    session = ChatSession(_engine(), store)
    with pytest.raises(ChatError, match="send a message first"):
        session.retry(Parts())


def test_thinking_switch_is_kept_per_chat(store):
    engine = _engine([REPLY])
    session = ChatSession(engine, store, model_info=engine.snapshot().model)
    session.set_thinking(False)
    result = session.send("hi", Parts()).run()
    assert result.thinking == "" and result.text == "Hello there, friend."
    assert engine.requests[-1][1].enable_thinking is False
    first = session.chat_id
    session.new_chat()
    session.send("other chat", Parts()).run()
    assert engine.requests[-1][1].enable_thinking is None  # the template's default
    session.open(first)
    session.send("again", Parts()).run()
    assert engine.requests[-1][1].enable_thinking is False


def test_cli_switch_applies_to_the_chat_it_opens(store):
    engine = _engine()
    info = engine.snapshot().model
    session = ChatSession(engine, store, params=GenerationParams(enable_thinking=False), model_info=info)
    session.send("x", Parts()).run()
    assert store.get_chat(session.chat_id).enable_thinking is False


def test_switch_refused_without_a_template_that_takes_it(store):
    engine = _engine()
    info = dataclasses.replace(engine.snapshot().model, template_takes_enable_thinking=False)
    session = ChatSession(engine, store, model_info=info)
    with pytest.raises(ChatError, match="no thinking switch"):
        session.set_thinking(True)
    session.send("x", Parts()).run()
    assert engine.requests[-1][1].enable_thinking is None


def test_one_off_turn_stores_nothing(store):
    engine = _engine([REPLY])
    parts = Parts()
    result = one_off_turn(engine, "hi", GenerationParams(), parts).run()
    assert result.text == "Hello there, friend." and store.list_chats() == []


def test_cli_switch_does_not_override_choices_made_later(store):
    engine = _engine()
    session = ChatSession(
        engine, store, params=GenerationParams(enable_thinking=False), model_info=engine.snapshot().model
    )
    session.send("a", Parts()).run()
    first = session.chat_id
    session.set_thinking(True)  # the user changes their mind for this chat
    session.new_chat()
    session.send("b", Parts()).run()
    assert engine.requests[-1][1].enable_thinking is False  # new chats: the CLI default
    session.open(first)
    assert store.get_chat(first).enable_thinking is True
    session.send("c", Parts()).run()
    assert engine.requests[-1][1].enable_thinking is True


# ---- which chat (--chat) and managing it: one rule for the app and plain mode ----


def test_chat_option_names_a_saved_chat_or_is_refused(store):
    from outlier_tui.core.chat import chat_from_option

    assert chat_from_option(store, None) is None and chat_from_option(store, "new") is None
    with pytest.raises(ChatError, match="--chat last: there are no saved chats"):
        chat_from_option(store, "last")
    old, new = store.create_chat("old"), store.create_chat("new one")
    assert chat_from_option(store, "last").id == new.id
    assert chat_from_option(store, str(old.id)).id == old.id
    for bad in ("999", "abc", "-1"):
        with pytest.raises(ChatError, match=f"--chat {bad}: no such chat"):
            chat_from_option(store, bad)


def test_rename_system_prompt_and_export_go_through_the_session(store, tmp_path):
    session = ChatSession(_engine(["Arr."]), store)
    assert session.system_prompt == ""
    session.set_system_prompt("  You are a pirate. ")
    chat_id = session.chat_id
    assert store.get_chat(chat_id).system_prompt == "You are a pirate." == session.system_prompt
    session.rename("Pirate talk")
    assert store.get_chat(chat_id).title == "Pirate talk"
    with pytest.raises(ChatError, match="needs a title"):
        session.rename("   ")
    assert store.get_chat(chat_id).title == "Pirate talk"
    session.send("ahoy", Parts()).run()
    written = session.export(tmp_path / "out" / "chat.md")
    assert written.read_text(encoding="utf-8") == store.export_markdown(chat_id)
    with pytest.raises(ChatError, match="Cannot write"):
        session.export(written / "x.md")  # a file is not a folder
    session.new_chat()
    with pytest.raises(ChatError, match="Nothing to export"):
        session.export(tmp_path / "empty.md")
    other = store.create_chat("other")
    session.rename("Renamed from the list", other.id)
    assert store.get_chat(other.id).title == "Renamed from the list"
