"""Pilot tests of the chat: send, stream, cancel, chats, export, clipboard, errors."""

from __future__ import annotations

from app_helpers import ready, send, wait_until

from engine.fake import FakeEngine
from outlier_tui.app.bindings import COMMAND_BINDINGS
from outlier_tui.app.chat_view import AssistantMessage, ChatLog, UserMessage
from outlier_tui.app.prompt_input import PromptInput
from outlier_tui.app.screens import ChatListScreen, InputDialog
from outlier_tui.app.status_bar import ModelStatus, TopBar

LONG = " ".join(f"word{i}" for i in range(200))


async def test_send_streams_answer_and_saves_it(make_app, store):
    engine = FakeEngine(script=["Hello **there**!\n\n```python\nprint(1)\n```"])
    app = make_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await send(pilot, "Say hi")
        assert app.query_one(PromptInput).text == ""
        msgs = store.messages(app.chat.id)
        assert [(m.role, m.status) for m in msgs] == [("user", "complete"), ("assistant", "complete")]
        assert msgs[1].content.startswith("Hello **there**!")
        assert engine.requests[0][0] == [{"role": "user", "content": "Say hi"}]
        answer = app.query_one(ChatLog).last_answer()
        assert answer.status == "complete" and "tok/s" in str(answer.query_one(".note").render())
        assert app.chat.title == "Say hi"  # first message names the chat
        assert "Say hi" in str(app.query_one(TopBar).render())


async def test_newline_key_does_not_send(make_app, store):
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("a", "ctrl+j", "b")
        assert app.query_one(PromptInput).text == "a\nb"
        await send(pilot, "")
        assert store.messages(app.chat.id)[0].content == "a\nb"


async def test_answer_streams_in_pieces(make_app):
    engine = FakeEngine(script=[LONG], token_delay=0.01)
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "go", wait=False)
        await wait_until(lambda: (a := app.query_one(ChatLog).last_answer()) is not None and "word5 " in a.text)
        answer = app.query_one(ChatLog).last_answer()
        assert answer.status == "partial" and app.generating
        assert "word199" not in answer.text
        await app.workers.wait_for_complete()
        assert answer.status == "complete" and answer.text.endswith("word199")
        assert not app.generating


async def test_escape_cancels_and_keeps_partial_answer(make_app, store):
    engine = FakeEngine(script=[LONG, "second"], token_delay=0.01)
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "long one", wait=False)
        await wait_until(lambda: "word3 " in (app.query_one(ChatLog).last_answer() or AssistantMessage()).text)
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        answer = store.messages(app.chat.id)[-1]
        assert answer.status == "cancelled"
        assert answer.content.startswith("word0 word1 word2 word3") and "word199" not in answer.content
        widget = app.query_one(ChatLog).last_answer()
        assert widget.status == "cancelled" and "stopped" in str(widget.query_one(".note").render())
        # The next request carries the kept text, so the engine's KV prefix stays valid.
        await send(pilot, "next")
        sent = engine.requests[-1][0]
        assert sent[1] == {"role": "assistant", "content": answer.content}
        assert sent[-1] == {"role": "user", "content": "next"}


async def test_new_chat_switch_and_delete(make_app, store):
    app = make_app(FakeEngine(script=["first answer", "second answer"]))
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await send(pilot, "first chat")
        first = app.chat.id
        await pilot.press("ctrl+n")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.chat.id != first and not app.query(UserMessage)
        await send(pilot, "second chat")
        second = app.chat.id
        assert len(store.list_chats()) == 2

        await pilot.press("ctrl+o")
        assert isinstance(app.screen, ChatListScreen)
        await pilot.press("down", "enter")  # newest first: the first chat is second
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.chat.id == first
        assert [w.text for w in app.query(UserMessage)] == ["first chat"]
        assert app.query_one(ChatLog).last_answer().text == "first answer"

        await pilot.press("ctrl+o")
        await pilot.press("d")  # highlighted: the current (first) chat
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert [c.id for c in store.list_chats()] == [second]
        assert app.chat.id == second


async def test_rename_export_and_system_prompt(make_app, store, tmp_path):
    engine = FakeEngine(script=["one", "two"])
    app = make_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await send(pilot, "hello")
        await pilot.press("ctrl+r")
        dialog = app.screen
        assert isinstance(dialog, InputDialog)
        dialog.query_one("Input").value = "Renamed"
        await pilot.press("enter")
        await pilot.pause()
        assert store.get_chat(app.chat.id).title == "Renamed"

        await pilot.press("ctrl+t")
        app.screen.query_one("#dialog-text").insert("Answer in French.")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert store.get_chat(app.chat.id).system_prompt == "Answer in French."
        await send(pilot, "again")
        assert engine.requests[-1][0][0] == {"role": "system", "content": "Answer in French."}

        await pilot.press("ctrl+s")
        assert isinstance(app.screen, InputDialog)
        await pilot.press("enter")  # accept the default path
        await pilot.pause()
        exported = tmp_path / "exports" / f"outlier-{app.chat.id}-renamed.md"
        text = exported.read_text()
        assert text.startswith("# Renamed") and "## You\n\nhello" in text and "Answer in French." in text


async def test_copy_last_answer_and_code_block(make_app):
    app = make_app(FakeEngine(script=["Use:\n\n```python\nx = 1\n```\n\nDone."]))
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("ctrl+g")  # nothing yet: a warning, no crash
        await send(pilot, "code please")
        await pilot.press("ctrl+g")
        assert app.clipboard.startswith("Use:") and app.clipboard.endswith("Done.")
        await pilot.press("ctrl+f")
        assert app.clipboard == "x = 1\n"


async def test_theme_switch_from_command_palette(make_app):
    app = make_app(theme="outlier-dark")
    async with app.run_test() as pilot:
        await ready(pilot)
        assert app.theme == "outlier-dark"
        await pilot.press("ctrl+p")
        await pilot.press(*"outlier-light")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.theme == "outlier-light"
        assert app.current_theme.dark is False


async def test_every_action_is_in_the_palette(make_app):
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        actions = {action for _, _, action in app.palette_commands()}
        bound = {b.action.split("(")[0] for b in app.BINDINGS}  # copy_code(N): one action
        assert bound <= {action.split("(")[0] for action in actions} | {"quit"}
        assert "delete_chat" in actions and "set_theme('outlier-light')" in actions


async def test_palette_lists_every_binding_with_its_key_and_runs_it(make_app):
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot)
        commands = {command.title: command.help for command in app.get_system_commands(app.screen)}
        for binding in COMMAND_BINDINGS:
            assert binding.tooltip in commands[binding.description]
            assert commands[binding.description].endswith(f"[{binding.key.split(',')[0]}]")
        assert "Theme" in commands and "Delete chat" in commands  # Textual's own; one with no key
        await pilot.press("ctrl+p")
        await pilot.press(*"Toggle memory pane")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert not app.show_memory and not app.query_one("#memory").display


async def test_user_keymap_remaps_bindings(make_app, tmp_path):
    keymap = tmp_path / "keymap.toml"
    keymap.write_text('new_chat = "f9"\n')
    app = make_app(keymap_file=keymap)
    async with app.run_test() as pilot:
        await ready(pilot)
        first = app.chat.id
        await send(pilot, "x")
        await pilot.press("f9")
        await app.workers.wait_for_complete()
        assert app.chat.id != first
        assert "[f9]" in dict((t, h) for t, h, _ in app.palette_commands())["New chat"]


async def test_load_error_is_shown_and_another_folder_can_be_loaded(make_app, store):
    reason = "Model folder /nope does not exist: pass --model with an mlx-community model folder."
    engine = FakeEngine(fail_with=reason)
    app = make_app(engine, model_dir="/nope")
    async with app.run_test(size=(120, 30)) as pilot:
        await ready(pilot)
        status = app.query_one(ModelStatus)
        assert app.model_state == "error" and status.display
        assert reason in str(status.visible_content.render())  # the error, not the progress bar
        app.query_one(PromptInput).insert("anyone there?")
        await pilot.press("enter")
        assert app.query_one(PromptInput).text == "anyone there?"  # kept, not lost
        assert store.messages(app.chat.id) == []
        await pilot.press("ctrl+n")  # still usable
        await app.workers.wait_for_complete()

        engine.fail_with = None
        app.query_one(PromptInput).clear()
        await pilot.press("ctrl+l")
        dialog = app.screen
        assert isinstance(dialog, InputDialog)
        dialog.query_one("Input").value = "/models/good"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.model_state == "ready" and not status.display
        assert app.model_info.path == "/models/good"
        await send(pilot, "now?")
        assert store.messages(app.chat.id)[-1].status == "complete"


async def test_error_in_the_middle_of_an_answer(make_app, store):
    engine = FakeEngine(script=["one two three four five"], fail_generate_after=3)
    app = make_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await send(pilot, "fail please")
        answer = store.messages(app.chat.id)[-1]
        assert answer.status == "error" and answer.content == "one two three "
        widget = app.query_one(ChatLog).last_answer()
        note = str(widget.query_one(".note").render())
        assert widget.status == "error" and "simulated I/O error" in note
        assert not app.generating
        engine.fail_generate_after = None
        await send(pilot, "retry")  # the app recovers
        assert store.messages(app.chat.id)[-1].status == "complete"


async def test_partial_answer_is_saved_while_streaming(make_app, store):
    clock = iter(range(10_000))
    engine = FakeEngine(script=[LONG], token_delay=0.01)
    app = make_app(engine, clock=lambda: float(next(clock)), save_interval=1.0)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "stream", wait=False)
        await wait_until(
            lambda: len(store.messages(app.chat.id)) == 2 and "word4 " in store.messages(app.chat.id)[1].content
        )
        user, answer = store.messages(app.chat.id)
        assert (user.status, answer.status) == ("complete", "partial")
        await pilot.press("escape")
        await app.workers.wait_for_complete()


async def test_history_shows_interrupted_answers(make_app, store):
    chat = store.create_chat("Old")
    store.add_message(chat.id, "user", "question")
    store.add_message(chat.id, "assistant", "half an ans", status="partial")
    app = make_app(chat=str(chat.id))
    async with app.run_test() as pilot:
        await ready(pilot)
        widget = app.query_one(ChatLog).last_answer()
        assert widget.text == "half an ans"
        assert "interrupted" in str(widget.query_one(".note").render())


async def test_dialog_open_while_answer_streams_and_panes_poll(make_app, store):
    engine = FakeEngine(script=[LONG], token_delay=0.005)
    app = make_app(engine, telemetry_interval=0.02)  # the real timer, fast
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "stream", wait=False)
        assert "generating" in str(app.query_one(TopBar).render())
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, ChatListScreen)
        await wait_until(lambda: not app.generating)  # finishes under the dialog
        await pilot.press("escape")
        await pilot.pause()
        assert store.messages(app.chat.id)[-1].status == "complete"
        assert app.query_one(ChatLog).last_answer().text.endswith("word199")


async def test_switching_chat_stops_the_running_answer(make_app, store):
    engine = FakeEngine(script=["short", LONG], token_delay=0.01)
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "first")
        first = app.chat.id
        await pilot.press("ctrl+n")
        await app.workers.wait_for_complete()
        await send(pilot, "long", wait=False)
        await wait_until(lambda: "word2 " in (app.query_one(ChatLog).last_answer() or AssistantMessage()).text)
        second = app.chat.id
        app.action_open_chat(first)
        await wait_until(lambda: app.chat.id == first and not app.generating)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert store.messages(second)[-1].status == "cancelled"
        assert [w.text for w in app.query(UserMessage)] == ["first"]


async def test_auto_scroll_pauses_when_the_user_scrolls_up(make_app):
    long_answer = "\n\n".join(f"Paragraph {i} " + "text " * 30 for i in range(60))
    app = make_app(FakeEngine(script=[long_answer], token_delay=0.002))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        log = app.query_one(ChatLog)
        await send(pilot, "go", wait=False)
        await wait_until(lambda: log.max_scroll_y > 20)
        await wait_until(lambda: log.scroll_y == log.max_scroll_y)  # following the answer
        app.action_scroll_chat(-1)  # what PageUp in the message box does
        await pilot.pause()
        held = log.scroll_y
        assert held < log.max_scroll_y
        grown = log.max_scroll_y
        await wait_until(lambda: log.max_scroll_y > grown + 10)
        assert log.scroll_y == held  # the user's position is kept while text arrives
        log.scroll_end(animate=False, immediate=True)  # back at the bottom: follows again
        await wait_until(lambda: not app.generating)
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y


async def test_enter_in_a_burst_of_keys_sends_the_whole_text(make_app, store):
    """Over SSH, typed keys can arrive in one read: Enter must see every character before it."""
    from textual import events

    engine = FakeEngine(script=["ok"])
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        app.query_one(PromptInput).focus()
        await pilot.pause()
        for ch in "burst of keys":
            app.post_message(events.Key("space" if ch == " " else ch, ch))
        app.post_message(events.Key("enter", "\r"))
        await wait_until(lambda: engine.requests)
        assert engine.requests[0][0][-1]["content"] == "burst of keys"
        await app.workers.wait_for_complete()


def test_unknown_chat_id_is_refused_like_plain_mode(tmp_path, capsys):
    """`outlier --chat 999` names no chat: the app refuses it with plain mode's line and
    status, before its screen starts, instead of silently opening a new chat."""
    import argparse
    import io

    from outlier_tui.app.run import run_app
    from outlier_tui.plain.main import run_plain

    args = argparse.Namespace(chat="999", fake_engine=True, model=None, server=None)
    assert run_app(args) == 1
    app_err = capsys.readouterr().err
    plain_err = io.StringIO()
    assert run_plain(args, stdin=io.StringIO("q"), stdout=io.StringIO(), stderr=plain_err) == 1
    assert app_err == plain_err.getvalue() and app_err.startswith("outlier: --chat 999: no such chat")
    assert app_err.count("\n") == 1
