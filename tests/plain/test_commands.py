"""Every slash command, typed into the REPL through the pipe input."""

from __future__ import annotations

from outlier_tui.plain.commands import COMMANDS


def users(store, chat_id):
    return [m.content for m in store.messages(chat_id) if m.role == "user"]


def test_new_starts_a_fresh_chat_and_keeps_the_old_one_cached(driver, engine, store):
    out = driver().run("first\r/new\rsecond\r")
    assert "New chat" in out
    chats = store.list_chats()
    assert len(chats) == 2
    assert users(store, chats[0].id) == ["second"] and users(store, chats[1].id) == ["first"]
    assert engine.resets == 0 and engine.saves == 1  # the chat left keeps its KV cache, saved for later
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
    out = d.run(f"/save {target}\rsave me\r/save {target}\r/save\r/save {tmp_path}/new/dir/x.md\r/save {target}/x.md\r")
    assert "Nothing to export yet" in d.err.getvalue()
    assert (tmp_path / "new" / "dir" / "x.md").read_text() == target.read_text()  # folders made, as in the app
    text = target.read_text()
    assert text.startswith("# save me") and "## You\n\nsave me" in text and "```python" in text
    assert "Saved chat #" in out
    errors = d.err.getvalue().splitlines()
    assert any("usage: /save FILE" in e for e in errors)
    assert any(e.startswith(f"outlier: Cannot write {target}/x.md") for e in errors)  # a file is no folder


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


def test_search_lists_matches_in_every_chat(driver, engine, store):
    other = store.create_chat("Disks")
    store.add_message(other.id, "user", "How fast is the SSD on a Mac mini?")
    d = driver()
    out = d.run("/search mac mini\r\r/search nothing-like-this\r/search\r")
    assert f"#{other.id}" in out and "Disks — [you] How fast is the SSD on a [Mac] [mini]?" in out
    # Enter on the prefilled "/open ID" opens that chat and shows the match.
    assert f"Opened chat #{other.id} “Disks”" in out
    assert "[you] How fast is the SSD on a Mac mini?" in out and d.session.chat_id == other.id
    assert "No message in any chat matches" in out
    assert "usage: /search WORDS" in d.err.getvalue()


def test_copy_n_writes_osc52_for_that_block(driver, engine, store):
    import base64

    d = driver()
    out = d.run("/copy\rhi\r/copy 1\r/copy 2\r/copy x\r")
    assert "the last answer has no code block" in d.err.getvalue()
    code = base64.b64encode(b"def reverse(s: str) -> str:\n    return s[::-1]\n").decode()
    assert f"\x1b]52;c;{code}\x07" in out
    assert "Copied code block 1 (2 lines)" in out
    assert "has 1 code block(s): /copy 1 to /copy 1" in d.err.getvalue()
    assert "usage: /copy [N]" in d.err.getvalue()


def test_file_attaches_to_the_next_message_only(driver, engine, store, tmp_path):
    source = tmp_path / "a.py"
    source.write_text("x = 1\n")
    d = driver()
    d.run(f"/file {source}\r/file\rexplain\ragain\r/file {tmp_path}\r")
    first, second = (r[0][-1]["content"] for r in engine.requests)
    assert first == f"explain\n\n{source}\n```python\nx = 1\n```"
    assert second == "again"
    assert "is a folder" in d.err.getvalue()


def test_at_path_refused_keeps_the_message_unsent(driver, engine, store, tmp_path):
    d = driver()
    d.run(f"look at @{tmp_path}/missing.py\r")
    assert engine.requests == [] and store.list_chats() == []
    assert "no such file" in d.err.getvalue() and "was not sent" in d.err.getvalue()


def test_think_on_off_is_kept_per_chat_and_show_hide(driver, engine, store):
    d = driver()
    out = d.run("/think\r/think off\rq1\r/think hide\r/think maybe\r")
    assert "Thinking: the template's default" in out
    assert "Thinking off for this chat" in out and "Thinking is hidden" in out
    assert engine.requests[0][1].enable_thinking is False
    assert store.list_chats()[0].enable_thinking is False
    assert "usage: /think on|off" in d.err.getvalue()


def test_retry_and_edit_without_messages_say_so(driver, engine, store):
    d = driver()
    d.run("/retry\r/edit\r")
    assert "Nothing to redo yet" in d.err.getvalue()
    assert "nothing to edit yet" in d.err.getvalue()
    assert engine.requests == []
