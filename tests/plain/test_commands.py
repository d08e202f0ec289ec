"""Every slash command, typed into the REPL through the pipe input."""

from __future__ import annotations

from outlier_tui.plain.commands import COMMANDS


def users(store, chat_id):
    return [m.content for m in store.messages(chat_id) if m.role == "user"]


def test_new_starts_a_fresh_chat_and_resets_the_engine(driver, engine, store):
    out = driver().run("first\r/new\rsecond\r")
    assert "New chat" in out
    chats = store.list_chats()
    assert len(chats) == 2
    assert users(store, chats[0].id) == ["second"] and users(store, chats[1].id) == ["first"]
    assert engine.resets == 1
    assert [m["content"] for m in engine.requests[1][0]] == ["second"]  # no old context


def test_system_set_show_clear(driver, engine, store):
    out = driver().run("/system\r/system You are a pirate.\r/system\rahoy\r/system clear\rbye\r")
    assert "No system prompt" in out
    assert "System prompt: You are a pirate." in out
    assert engine.requests[0][0][0] == {"role": "system", "content": "You are a pirate."}
    assert engine.requests[1][0][0]["role"] == "user"  # cleared
    assert store.get_chat(store.list_chats()[0].id).system_prompt == ""
    assert store.list_chats()[0].title == "ahoy"  # named by the first message, not by /system


def test_multiline_system_prompt(driver, engine, store):
    driver().run("/system line one\nline two\rq\r")
    assert engine.requests[0][0][0]["content"] == "line one\nline two"


def test_history_shows_this_chat(driver, engine, store):
    out = driver().run("/history\rwhat is up\r/history\r")
    assert "No messages yet" in out
    assert "[you] what is up" in out
    assert "[assistant] You said: what is up" in out


def test_save_writes_markdown(driver, engine, store, tmp_path):
    target = tmp_path / "chat.md"
    d = driver()
    out = d.run(f"/save {target}\rsave me\r/save {target}\r/save\r/save {tmp_path}/no/such/dir/x.md\r")
    assert "nothing to save yet" in d.err.getvalue()
    text = target.read_text()
    assert text.startswith("# save me") and "## You\n\nsave me" in text and "```python" in text
    assert f"Saved chat #" in out
    errors = d.err.getvalue().splitlines()
    assert any("usage: /save FILE" in e for e in errors)
    assert any(e.startswith("outlier: cannot write") for e in errors)


def test_stats_report_and_toggle(driver, engine, store):
    d = driver()
    out = d.run("/stats\r/stats off\rquiet\r/stats on\rloud\r/stats bogus\r")
    assert "usage: /stats" in d.err.getvalue()
    assert "expert cache" in out and "hit rate" in out and "RSS" in out and "tok/s" in out
    # One stats line per answer while on: "quiet" gets none, "loud" gets one.
    answer_lines = [ln for ln in out.splitlines() if " tok · " in ln]
    assert len(answer_lines) == 1
    assert "Per-answer stats line off" in out and "Per-answer stats line on" in out


def test_help_lists_every_command_and_the_keys(driver):
    out = driver().run("/help\r")
    for name in ("new", "system", "history", "save", "stats", "help", "exit", "chats", "open"):
        assert COMMANDS[name].usage in out
    assert "Ctrl-J" in out and "Alt-Enter" in out and "Ctrl-C" in out and "Ctrl-D" in out


def test_exit_and_quit_end_the_session(driver, engine):
    for command in ("/exit", "/quit", "/EXIT"):
        d = driver()
        d.run(command + "\rnever sent\r", close=False)
        assert d.exit_code == 0
    assert engine.requests == []


def test_chats_and_open(driver, engine, store):
    old = store.create_chat("older chat")
    store.add_message(old.id, "user", "older question")
    d = driver()
    out = d.run(f"/chats\r/open {old.id}\rfollow up\r/open 999\r/open\r")
    assert f"#{old.id}" in out and "older chat" in out
    assert users(store, old.id) == ["older question", "follow up"]
    assert d.err.getvalue().count("no chat #") == 2


def test_unknown_command_and_double_slash(driver, engine):
    d = driver()
    d.run("/frobnicate\r//etc/passwd is a path\r")
    assert "unknown command /frobnicate" in d.err.getvalue()
    assert engine.requests[0][0][-1]["content"] == "/etc/passwd is a path"
