"""The interactive REPL driven through prompt_toolkit's pipe input with a FakeEngine."""

from __future__ import annotations

import asyncio
import io

from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from engine.api import GenerationParams
from engine.fake import FakeEngine
from outlier_tui.plain.session import PlainSession
from outlier_tui.store import ConversationStore


def test_send_streams_answer_and_saves_both_messages(driver, engine, store):
    d = driver()
    out = d.run("hello\r")
    assert d.exit_code == 0
    assert "You said: hello" in out and "return s[::-1]" in out
    (chat,) = store.list_chats()
    assert chat.title == "hello"
    user, answer = store.messages(chat.id)
    assert (user.role, user.content, user.status) == ("user", "hello", "complete")
    assert answer.role == "assistant" and answer.status == "complete"
    assert answer.content.startswith("You said: hello")
    assert "tok/s" in out and "hit" in out and "RSS" in out  # the stats line


def test_second_message_sends_whole_history(driver, engine, store):
    driver().run("one\rtwo\r")  # typed ahead: "two" waits while "one" is answered
    first, second = engine.requests
    assert [m["content"] for m in first[0]] == ["one"]
    assert [m["role"] for m in second[0]] == ["user", "assistant", "user"]
    assert second[0][-1]["content"] == "two"
    assert len(store.list_chats()) == 1


def test_multiline_with_ctrl_j_and_alt_enter(driver, engine, store):
    driver().run("line one\nline two\rfirst\x1b\rsecond\r")
    assert [m.content for m in store.messages(store.list_chats()[0].id) if m.role == "user"] == [
        "line one\nline two",
        "first\nsecond",
    ]


def test_ctrl_c_cancels_the_running_answer(driver, store):
    long_answer = " ".join(f"word{i}" for i in range(400))
    engine = FakeEngine(script=[long_answer, "short reply"], token_delay=0.01)
    engine.load("fake").result()
    d = driver(engine)

    def press_ctrl_c_mid_answer(drv, inp):
        def on_first_text(_text):
            inp.send_text("\x03")

        # The banner is the first write; arm the trigger for the answer's first text.
        drv.out.on_write = lambda t: setattr(drv.out, "on_write", on_first_text)
        inp.send_text("and then\r/exit\r")  # typed ahead while the answer streams

    out = d.run("tell me everything\r", script=press_ctrl_c_mid_answer)
    assert "[answer stopped]" in out
    chat = store.list_chats()[0]
    msgs = store.messages(chat.id)
    assert [(m.role, m.status) for m in msgs] == [
        ("user", "complete"),
        ("assistant", "cancelled"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    stopped = msgs[1].content
    assert stopped.startswith("word0 ") and len(stopped) < len(long_answer)
    # The stopped text stays in the conversation the engine sees.
    assert engine.requests[1][0][1] == {"role": "assistant", "content": stopped}
    engine.close()


def test_ctrl_c_at_prompt_clears_line_then_double_ctrl_c_exits(driver, engine, store):
    driver().run("typo\x03hello\r")
    assert [m.content for m in store.messages(store.list_chats()[0].id) if m.role == "user"] == ["hello"]
    d = driver()
    out = d.run("typo\x03\x03\x03", close=False)  # clear the line, arm, exit
    assert d.exit_code == 0
    assert out.count("Ctrl-C again") == 1


def test_ctrl_d_exits(driver, engine, store):
    d = driver()
    d.run("\x04", close=False)
    assert d.exit_code == 0
    assert store.list_chats() == []  # no message, no empty chat


def test_engine_failure_is_one_line_and_saved_as_error(driver, store):
    engine = FakeEngine(fail_generate_after=2)
    engine.load("fake").result()
    d = driver(engine)
    d.run("hi\r")
    assert d.err.getvalue().startswith("outlier: Reading experts from the SSD failed")
    assert d.err.getvalue().count("\n") == 1
    chat = store.list_chats()[0]
    assert [m.status for m in store.messages(chat.id)] == ["complete", "error"]
    engine.close()


def test_continue_a_stored_chat(driver, engine, store):
    chat = store.create_chat("earlier", system_prompt="Be brief.")
    store.add_message(chat.id, "user", "old question")
    store.add_message(chat.id, "assistant", "old answer")
    d = driver(chat_id=chat.id)
    out = d.run("new question\r")
    assert "Continuing chat #" in out
    assert [m["content"] for m in engine.requests[0][0]] == ["Be brief.", "old question", "old answer", "new question"]


def test_input_history_persists_in_data_dir(engine, store, data_dir):
    for text in ("remember me\r", "\x1b[A\r"):  # second session: Up recalls the first input
        with create_pipe_input() as inp:
            session = PlainSession(engine, store, input=inp, output=DummyOutput(), out=io.StringIO())
            inp.send_text(text)
            inp.close()
            assert asyncio.run(session.run_async()) == 0
    assert "remember me" in (data_dir / "plain_history").read_text()
    users = [m.content for m in store.messages(store.list_chats()[0].id) if m.role == "user"]
    assert users == ["remember me"]
    assert [m.content for m in store.messages(store.list_chats()[1].id) if m.role == "user"] == ["remember me"]


def test_params_reach_the_engine(driver, engine):
    driver(params=GenerationParams(max_tokens=3)).run("cut me short please now\r")
    assert engine.requests[0][1].max_tokens == 3


def test_colour_mode_highlights_the_code_block(driver, engine):
    out = driver(color=True).run("hi\r")
    assert "\x1b[" in out
    assert "You said: hi" in out  # prose is not touched
    assert "def reverse" not in out  # the code is split by colour escapes
    assert "reverse" in out


def test_store_survives_reopen(driver, engine, store, data_dir):
    driver().run("persist me\r")
    with ConversationStore() as again:
        (chat,) = again.list_chats()
        assert [m.content for m in again.messages(chat.id)][0] == "persist me"
