"""SIGTERM and SIGHUP (an SSH session dropping) mid-answer save the answer as shown,
like Ctrl-C, in pipe mode and in the REPL; the process exits with 128 + the signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from outlier_tui.store import ConversationStore

REPO = Path(__file__).resolve().parents[2]
LONG = ["--max-tokens", "4000", "--no-stats"]


@pytest.fixture
def long_answers(checkpoint_factory, tmp_path):
    """A tiny checkpoint with no end-of-answer token: answers run to --max-tokens."""
    import json
    import shutil

    path = tmp_path / "model"
    shutil.copytree(checkpoint_factory("mixtral"), path)
    tok_config = json.loads((path / "tokenizer_config.json").read_text())
    tok_config["eos_token"] = None
    (path / "tokenizer_config.json").write_text(json.dumps(tok_config))
    return str(path)


def _saved_answer(data_dir: Path):
    with ConversationStore(data_dir / "chats.sqlite3") as store:
        (chat,) = store.list_chats()
        user, answer = store.messages(chat.id)
        return user, answer


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_pipe_mode_saves_the_partial_answer(long_answers, tmp_path, sig):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OUTLIER_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "outlier_tui.cli", "chat", "--model", long_answers, "--chat", "new", *LONG],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdin.write(b"tell me everything\n")
    proc.stdin.close()
    shown = proc.stdout.read(64)  # the answer is streaming
    proc.send_signal(sig)
    shown += proc.stdout.read()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 128 + sig, err  # the Ctrl-C path: cancelled and saved
    assert f"outlier: stopped by {signal.Signals(sig).name}" in err and "Traceback" not in err
    user, answer = _saved_answer(tmp_path / "data")
    assert user.content == "tell me everything"
    assert answer.status == "cancelled" and len(answer.content.encode()) >= 64
    assert shown.decode("utf-8", "replace").strip().startswith(answer.content.strip()[:32])


def test_generate_stops_with_the_same_status(long_answers):
    """`outlier generate` answers through the same function as pipe mode: SIGTERM is 143 there too."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "outlier_tui.cli", "generate", "--model", long_answers, "--prompt", "go"]
        + ["--max-tokens", "4000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    shown = proc.stdout.read(64)  # the answer is streaming
    proc.send_signal(signal.SIGTERM)
    shown += proc.stdout.read()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM, err
    assert err.strip().endswith("outlier: stopped by SIGTERM") and "Traceback" not in err
    assert len(shown) >= 64


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_repl_saves_the_partial_answer_and_exits(long_answers, tmp_path, sig):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_tty import Terminal

    term = Terminal("--plain", "--model", long_answers, *LONG, data_dir=tmp_path / "data")
    term.wait_prompt()
    term.type("tell me everything\r")
    end = time.monotonic() + 60
    while len(term.raw) - term.typed_at < 400 and time.monotonic() < end:  # the answer is streaming
        term._read_some()
    os.kill(term.pid, sig)
    assert term.wait() == 128 + sig
    user, answer = _saved_answer(tmp_path / "data")
    assert user.content == "tell me everything"
    assert answer.status == "cancelled" and answer.content
