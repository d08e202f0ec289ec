"""Pipe mode: question on stdin, only the answer on stdout, exit status says how it went."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.fake import FakeEngine, default_answer
from outlier_tui.plain.main import run_plain
from outlier_tui.plain.pipe import run_pipe

REPO = Path(__file__).resolve().parents[2]


def outlier(*args: str, stdin: str, data_dir: Path) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess with stdin a pipe (so plain pipe mode)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OUTLIER_DATA_DIR": str(data_dir), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "outlier_tui.cli", "chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=REPO,
        timeout=120,
    )


def fake_args(**overrides) -> argparse.Namespace:
    values = dict(
        model=None,
        cache_mb=None,
        theme=None,
        plain=True,
        chat=None,
        no_stats=False,
        max_tokens=None,
        temperature=None,
        fake_engine=True,
    )
    values.update(overrides)
    return argparse.Namespace(**values)


def test_run_pipe_prints_only_the_answer(engine):
    out, err = io.StringIO(), io.StringIO()
    assert run_pipe(engine, "why?", out, err) == 0
    assert out.getvalue() == default_answer([{"role": "user", "content": "why?"}])
    assert "tok/s" in err.getvalue()
    assert engine.requests[0][0] == [{"role": "user", "content": "why?"}]


def test_run_pipe_failure_exits_1_with_one_line():
    engine = FakeEngine(fail_generate_after=1)
    engine.load("fake").result()
    out, err = io.StringIO(), io.StringIO()
    assert run_pipe(engine, "q", out, err, show_stats=False) == 1
    assert err.getvalue().startswith("outlier: Reading experts") and err.getvalue().count("\n") == 1


class ClosedAfter(io.StringIO):
    """A stdout whose reader goes away after `n` writes (like `| head -c 5`)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def write(self, text: str) -> int:
        if self.n <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.n -= 1
        return super().write(text)


def test_closed_stdout_stops_generation_quietly(store):
    engine = FakeEngine(script=[" ".join(["word"] * 200)], token_delay=0.001)
    engine.load("fake").result()
    chat = store.create_chat()
    out, err = ClosedAfter(3), io.StringIO()
    assert run_pipe(engine, "q", out, err, store=store, chat_id=chat.id, show_stats=False) == 141
    assert err.getvalue() == ""
    assert out.getvalue() == "word word word "
    answer = store.messages(chat.id)[-1]
    assert answer.status == "cancelled" and answer.content.startswith("word word word word")
    engine.close()


def test_run_plain_pipe_saves_only_with_chat(store):
    out, err = io.StringIO(), io.StringIO()
    assert run_plain(fake_args(), stdin=io.StringIO("one-off\n"), stdout=out, stderr=err) == 0
    assert store.list_chats() == []  # a plain pipe leaves no chat behind
    assert run_plain(fake_args(chat="new"), stdin=io.StringIO("keep me\n"), stdout=out, stderr=err) == 0
    (chat,) = store.list_chats()
    assert chat.title == "keep me"
    assert run_plain(fake_args(chat=str(chat.id)), stdin=io.StringIO("and me"), stdout=out, stderr=err) == 0
    assert [m.content for m in store.messages(chat.id) if m.role == "user"] == ["keep me", "and me"]
    assert [m.status for m in store.messages(chat.id)] == ["complete"] * 4
    assert f"--chat {chat.id}" in err.getvalue()


@pytest.mark.parametrize(
    "args, stdin, expected",
    [
        (dict(chat="999"), "q", "outlier: --chat 999: no such chat"),
        (dict(chat="last"), "q", "outlier: --chat last: there are no saved chats"),
        (dict(), "  \n", "outlier: standard input is empty"),
        (
            dict(fake_engine=False, model="/definitely/not/here"),
            "q",
            "outlier: Model folder /definitely/not/here does not exist",
        ),
    ],
)
def test_run_plain_errors_are_one_line(args, stdin, expected):
    out, err = io.StringIO(), io.StringIO()
    assert run_plain(fake_args(**args), stdin=io.StringIO(stdin), stdout=out, stderr=err) == 1
    assert err.getvalue().startswith(expected) and err.getvalue().count("\n") == 1
    assert out.getvalue() == ""


def test_cli_pipe_with_fake_engine(tmp_path):
    """`echo question | outlier chat` (no --plain needed when stdin is a pipe)."""
    done = outlier("--fake-engine", "--no-stats", stdin="what now?\n", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == default_answer([{"role": "user", "content": "what now?"}])
    assert "Traceback" not in done.stderr


def test_cli_bad_model_exits_nonzero_with_one_line(tmp_path):
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    for model in (str(tmp_path / "missing"), str(not_a_model)):
        done = outlier("--plain", "--model", model, stdin="hello", data_dir=tmp_path)
        assert done.returncode == 1
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("outlier: ") and model in lines[0]


def test_cli_pipe_on_a_tiny_checkpoint(tmp_path, request):
    """The real engine end to end: answer on stdout (exactly the engine's text), nothing else."""
    if not (REPO / "engine" / "worker.py").exists():
        pytest.skip("needs the real engine (engine/worker.py)")
    try:
        factory = request.getfixturevalue("checkpoint_factory")
    except pytest.FixtureLookupError:
        pytest.skip("needs the checkpoint_factory fixture from tests/conftest.py")
    model_dir = factory("qwen3_moe")

    from engine import Engine, GenerationParams, TextDelta

    engine = Engine()
    try:
        engine.load(str(model_dir)).result(timeout=120)
        events = list(engine.generate([{"role": "user", "content": "hello"}], GenerationParams(max_tokens=12)))
    finally:
        engine.close()
    expected = "".join(e.text for e in events if isinstance(e, TextDelta))

    done = outlier("--plain", "--model", str(model_dir), "--max-tokens", "12", stdin="hello\n", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected + ("" if expected.endswith("\n") or not expected else "\n")
    assert "ready" in done.stderr  # load progress goes to stderr
    assert "tok/s" in done.stderr  # and so does the stats line

    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "qwen3_moe"}')
    done = outlier("--plain", "--model", str(bad), stdin="hello", data_dir=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("outlier: ") and "Traceback" not in done.stderr


REPLY = (
    "<think>\nThe user wants code. I will write a function.\n</think>\n\nHere it is:\n\n```python\nprint('hi')\n```\n"
)


def test_cli_fake_reply_streams_the_file_answer_on_stdout_thinking_on_stderr(tmp_path):
    reply = tmp_path / "reply.md"
    reply.write_text(REPLY)
    done = outlier("--fake-engine", "--fake-reply", str(reply), "--no-stats", stdin="go\n", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Here it is:\n\n```python\nprint('hi')\n```\n"
    assert "The user wants code" not in done.stderr
    shown = outlier(
        "--fake-engine", "--fake-reply", str(reply), "--no-stats", "--show-thinking", stdin="go\n", data_dir=tmp_path
    )
    assert shown.stdout == done.stdout
    assert shown.stderr.endswith("ready\nThe user wants code. I will write a function.\n")


def test_cli_fake_reply_errors_are_one_line(tmp_path):
    for args, expected in [
        (("--fake-engine", "--fake-reply", str(tmp_path / "none.txt")), "outlier: --fake-reply"),
        (("--fake-reply", str(tmp_path)), "outlier: --fake-reply only works"),
    ]:
        done = outlier(*args, stdin="q\n", data_dir=tmp_path)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith(expected) and done.stderr.count("\n") == 1


def test_cli_pipe_attaches_at_paths_and_refuses_bad_ones(tmp_path):
    src = tmp_path / "hello.py"
    src.write_text("print('hello')\n")
    echo = tmp_path / "echo.txt"
    echo.write_text("ok")
    done = outlier(
        "--fake-engine", "--no-stats", "--chat", "new", stdin=f"Explain @{src}\n", data_dir=tmp_path / "data"
    )
    assert done.returncode == 0, done.stderr
    assert "```python\nprint('hello')\n```" in done.stdout  # the fake engine echoes the message
    assert f"{src}\n```python" in done.stdout
    (tmp_path / "big.txt").write_text("x" * 3000)
    refused = outlier(
        "--fake-engine",
        "--no-stats",
        "--chat",
        "new",
        "--attach-limit-kb",
        "2",
        stdin=f"Read @{tmp_path / 'big.txt'} now",
        data_dir=tmp_path / "data",
    )
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "over the 2 KB limit" in refused.stderr
    assert "big.txt is 2.9 KB" in refused.stderr and "Nothing was sent" in refused.stderr
    with ConversationStoreAt(tmp_path / "data") as store:
        (chat,) = store.list_chats()  # the refused message made no chat and sent nothing
        assert len(store.messages(chat.id)) == 2


def test_cli_pipe_on_a_thinking_checkpoint(tmp_path):
    """A tiny checkpoint whose template has a thinking switch: stdout is the answer only."""
    from thinking_checkpoint import oracle_split, write_thinking_checkpoint

    path = write_thinking_checkpoint(tmp_path / "thinking")
    question = [{"role": "user", "content": "hello"}]
    _, thinking, _ = oracle_split(path, question, None, 10)
    done = outlier(
        "--plain",
        "--model",
        str(path),
        "--max-tokens",
        "10",
        "--no-stats",
        "--show-thinking",
        stdin="hello\n",
        data_dir=tmp_path / "data",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and thinking in done.stderr
    _, _, answer = oracle_split(path, question, False, 10)
    off = outlier(
        "--plain",
        "--model",
        str(path),
        "--max-tokens",
        "10",
        "--no-stats",
        "--no-think",
        "--chat",
        "new",
        stdin="hello\n",
        data_dir=tmp_path / "data",
    )
    assert off.returncode == 0, off.stderr
    assert off.stdout == answer + ("" if answer.endswith("\n") else "\n")
    with ConversationStoreAt(tmp_path / "data") as store:
        (chat,) = store.list_chats()
        assert chat.enable_thinking is False  # --no-think is kept on the chat
        assert store.messages(chat.id)[-1].content == answer


class ConversationStoreAt:
    """The store of a subprocess's data dir, opened from the test."""

    def __init__(self, data_dir: Path) -> None:
        from outlier_tui.store import DB_FILENAME, ConversationStore

        self.store = ConversationStore(data_dir / DB_FILENAME)

    def __enter__(self):
        return self.store

    def __exit__(self, *exc) -> None:
        self.store.close()
