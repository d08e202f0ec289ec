"""A gpt-oss (harmony channels) reply from the fake engine in the plain front-ends: the REPL keeps
the analysis channel as thinking apart from the final answer; pipe mode prints only the answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.fake import FakeEngine

REPO = Path(__file__).resolve().parents[2]

HARMONY = (
    "<|channel|>analysis<|message|>The user greets me. Reply briefly.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello from gpt-oss!<|return|>"
)


def outlier(*args: str, stdin: str, data_dir: Path) -> subprocess.CompletedProcess:
    """`outlier chat ARGS` with stdin a pipe (plain pipe mode)."""
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


def test_repl_keeps_harmony_analysis_as_thinking(driver, store):
    engine = FakeEngine(script=[HARMONY])
    engine.load("fake").result()
    out = driver(engine).run("hi\r")
    assert "Hello from gpt-oss!" in out and "<|channel|>" not in out
    _, answer = store.messages(store.list_chats()[0].id)
    assert (answer.content, answer.thinking) == ("Hello from gpt-oss!", "The user greets me. Reply briefly.")


def test_pipe_prints_the_final_channel_and_thinking_only_on_request(tmp_path):
    reply = tmp_path / "harmony.txt"
    reply.write_text(HARMONY)
    done = outlier("--fake-engine", "--fake-reply", str(reply), "--no-stats", stdin="go\n", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello from gpt-oss!\n"
    assert "greets" not in done.stderr
    shown = outlier(
        "--fake-engine", "--fake-reply", str(reply), "--no-stats", "--show-thinking", stdin="go\n", data_dir=tmp_path
    )
    assert shown.stdout == done.stdout
    assert shown.stderr.endswith("The user greets me. Reply briefly.\n")
