"""Kill -9 loop: the REPL killed at random moments of its answers, many times over.

Not a CI test. Each round starts `outlier chat --plain` on a pseudo-terminal
(a new chat every few rounds, otherwise `--chat last`), types a question, waits
for the answer to start streaming, sleeps a random fraction of a typical
answer's time and sends SIGKILL. Some rounds the answer has finished by then
(the kill lands at the prompt); most land mid-answer.

After every round the chat database must pass SQLite's integrity check, every
chat must open (its messages and the conversation sent to the engine), every
question typed so far must be there, and every message that was complete
after an earlier round must be unchanged (content and status).

    python -m outlier_tui.bench.kill_loop --model DIR --rounds 100

Prints a Markdown summary and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import os
import pty
import random
import select
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

PROMPT_READY = b"\x1b[?2004h"  # prompt_toolkit turns bracketed paste on when the prompt is up
CPR_REQUEST = b"\x1b[6n"


class Repl:
    """`outlier chat --plain` on a pty, answering cursor-position requests like a terminal."""

    def __init__(self, args: list[str], env: dict) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve(sys.executable, [sys.executable, "-m", "outlier_tui.cli", "chat", "--plain", *args], env)
        self.raw = b""

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.02)
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    return
                self.raw += data
                for _ in range(data.count(CPR_REQUEST)):
                    os.write(self.fd, b"\x1b[1;1R")

    def wait_for(self, needle: bytes, since: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while needle not in self.raw[since:]:
            if time.monotonic() > end:
                return False
            self.pump(0.05)
        return True

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def snapshot(db_path: Path) -> dict[int, tuple]:
    """Every message: id -> (chat id, role, content, status)."""
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT id, chat_id, role, content, status FROM messages").fetchall()
    return {r[0]: r[1:] for r in rows}


def check(db_path: Path, complete_before: dict[int, tuple], questions: list[str]) -> list[str]:
    """Problems found in the database after a kill (empty: all good)."""
    from outlier_tui.store import ConversationStore

    problems = []
    with sqlite3.connect(db_path) as db:
        verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
    if verdict != "ok":
        problems.append(f"integrity_check: {verdict}")
    with ConversationStore(db_path) as store:
        for chat in store.list_chats():
            store.messages(chat.id)
            store.engine_messages(chat.id)
    now = snapshot(db_path)
    for message_id, row in complete_before.items():
        if now.get(message_id) != row:
            problems.append(f"message {message_id} changed: {row!r} -> {now.get(message_id)!r}")
    asked = [row[2] for _, row in sorted(now.items()) if row[1] == "user"]
    if asked != questions:
        problems.append(f"questions in the store {len(asked)} != typed {len(questions)}")
    return problems


def _moment(messages: dict[int, tuple], question: str) -> str:
    """Where the kill landed, from what the store holds after it."""
    ids = sorted(messages)
    asked = [k for k in ids if messages[k][1] == "user" and messages[k][2] == question]
    if not asked:
        return "before_answer"
    later = [k for k in ids if k > asked[-1] and messages[k][0] == messages[asked[-1]][0]]
    if not later:
        return "before_answer"
    return "at_prompt" if messages[later[0]][3] == "complete" else "mid_answer"


def run(
    model: str, rounds: int, new_chat_every: int, max_tokens: int, seed: int, data_dir: Path, progress=print
) -> dict:
    rng = random.Random(seed)
    env = {
        **os.environ,
        "OUTLIER_DATA_DIR": str(data_dir),
        "TERM": "xterm-256color",
        "PYTHONWARNINGS": "ignore",
    }
    db_path = data_dir / "chats.sqlite3"
    questions: list[str] = []
    complete: dict[int, tuple] = {}
    counts = {"mid_answer": 0, "at_prompt": 0, "before_answer": 0}
    problems: list[str] = []
    answer_seconds = 1.0  # refined from answers that finish
    start = time.monotonic()
    for i in range(rounds):
        args = ["--model", model, "--max-tokens", str(max_tokens), "--no-stats"]
        if i % new_chat_every and i > 0:
            args += ["--chat", "last"]
        repl = Repl(args, env)
        if not repl.wait_for(PROMPT_READY, 0, 120):
            repl.kill()
            problems.append(f"round {i}: the REPL did not start: {repl.raw[-300:]!r}")
            break
        question = f"Question {i}: tell me about disks and caches."
        typed_at = len(repl.raw)
        os.write(repl.fd, (question + "\r").encode())
        questions.append(question)
        began = time.monotonic()
        repl.wait_for(question.encode()[-8:], typed_at, 30)  # echoed: the answer is on its way
        repl.pump(rng.uniform(0, 1.3 * answer_seconds))
        if repl.wait_for(PROMPT_READY, typed_at + 1, 0):
            answer_seconds = 0.8 * answer_seconds + 0.2 * (time.monotonic() - began)
        repl.kill()
        found = check(db_path, complete, questions) if db_path.exists() else ["no database"]
        problems += [f"round {i}: {p}" for p in found]
        now = snapshot(db_path)
        counts[_moment(now, question)] += 1
        complete = {k: v for k, v in now.items() if v[3] == "complete"}
        if (i + 1) % 10 == 0:
            progress(f"kill loop: {i + 1}/{rounds} rounds, {counts}, {len(problems)} problems")
    with sqlite3.connect(db_path) as db:
        chats = db.execute("SELECT count(*) FROM chats").fetchone()[0]
        statuses = dict(db.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall())
    return dict(
        rounds=rounds,
        seconds=time.monotonic() - start,
        counts=counts,
        chats=chats,
        statuses=statuses,
        problems=problems,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SIGKILL the REPL at random moments of its answers.")
    parser.add_argument("--model", metavar="DIR", help="model folder (default: the demo model)")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--new-chat-every", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from outlier_tui.model_choice import resolve_model_dir

    model = str(resolve_model_dir(args.model))
    with tempfile.TemporaryDirectory(prefix="outlier-kill-loop-") as tmp:
        result = run(
            model,
            args.rounds,
            args.new_chat_every,
            args.max_tokens,
            args.seed,
            Path(tmp),
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
    print(f"command: python -m outlier_tui.bench.kill_loop {' '.join(argv if argv is not None else sys.argv[1:])}\n")
    c = result["counts"]
    print(
        f"{result['rounds']} SIGKILLs in {result['seconds']:.0f} s: {c['mid_answer']} mid-answer, "
        f"{c['at_prompt']} after the answer finished, {c['before_answer']} before it started; "
        f"{result['chats']} chats; messages by status: {result['statuses']}"
    )
    print(f"problems: {len(result['problems'])}")
    for problem in result["problems"][:20]:
        print(f"- {problem}")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
