"""Fuzz a tiny checkpoint's safetensors headers, shard index and config.json.

Each case damages one file of a copy of a valid two-shard checkpoint (random
byte flips, truncations, insertions and deletions, or JSON-level mutations:
values swapped for awkward ones, keys dropped, duplicated or renamed) and
then opens it as a user would. A case passes when the load refuses it with one
of the project's own errors (engine.errors.OutlierError), as the README promises
(checked before any tensor is read), or when it loads and generates exactly
what mlx-lm generates from the same damaged folder fully resident. Anything
else is a bug, reported with the seed that reproduces it: another exception, a
hang past the per-case timeout, a wrong answer, or a folder that loads and then
fails mid-answer (even with our own error: the checks at load missed it).

The test suite runs a bounded number of cases; long runs:
    PYTHONPATH=. python tests/fuzz_checkpoint.py --cases 100000
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

AWKWARD = [
    0,
    -1,
    1,
    2,
    3,
    7,
    2**31,
    2**63,
    2**64,
    1.5,
    -0.0,
    1e308,
    "",
    "x",
    "2",
    "U32",
    "F64",
    None,
    True,
    False,
    [],
    [1],
    [-1, 2],
    {},
    {"a": 1},
]
PROMPT = "hi"
ANSWER_TOKENS = 3


class CaseTimeout(Exception):
    """A case ran past its time limit (raised from SIGALRM)."""


class LateRejection(Exception):
    """A damaged folder loaded, then failed while answering: the load's checks let it through."""


@dataclass
class Outcome:
    seed: int
    target: str
    mutation: str
    result: str  # "rejected:<ErrorClass>" | "ok" | "bug:<what>" (bug:LateRejection: failed after loading)
    detail: str = ""

    @property
    def is_bug(self) -> bool:
        return self.result.startswith("bug:")


# ---- mutations ------------------------------------------------------------------


def _byte_mutation(rng: random.Random, data: bytes, region: int) -> tuple[bytes, str]:
    """A byte-level change within the first `region` bytes (or a truncation anywhere)."""
    data = bytearray(data)
    region = max(1, min(region, len(data)))
    op = rng.choice(["flip", "flip", "set", "insert", "delete", "truncate"])
    pos = rng.randrange(region)
    if op == "flip":
        data[pos] ^= 1 << rng.randrange(8)
    elif op == "set":
        data[pos] = rng.choice([0, 0x22, 0x2C, 0x30 + rng.randrange(10), 0x5B, 0x7B, 0x7D, 0xFF, rng.randrange(256)])
    elif op == "insert":
        data[pos:pos] = bytes(rng.choice([b",", b'"', b"0", b"}", b" ", b"\xff", b"-", b"9"]) * rng.randint(1, 3))
    elif op == "delete":
        del data[pos : pos + rng.randint(1, 4)]
    else:
        pos = rng.randrange(len(data) + 1)
        del data[pos:]
    return bytes(data), f"{op}@{pos}"


def _paths(node, path=()):
    """Every (container path, key) below node."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield path + (key,)
        yield from _paths(value, path + (key,))


def _awkward(rng: random.Random, old) -> object:
    if isinstance(old, bool) or not isinstance(old, (int, float)) or rng.random() < 0.5:
        return copy.deepcopy(rng.choice(AWKWARD))
    return rng.choice([old + 1, old - 1, old * 2, old // 2 if isinstance(old, int) else old / 2, -old])


def _json_mutation(rng: random.Random, tree) -> tuple[object | bytes, str]:
    """A JSON-level change; returns the new tree, or raw bytes for changes JSON cannot express."""
    paths = list(_paths(tree))
    if not paths:
        return copy.deepcopy(rng.choice(AWKWARD)), "replace-root"
    path = rng.choice(paths)
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    op = rng.choice(["replace", "replace", "replace", "delete", "duplicate", "rename", "wrap", "add"])
    if op == "duplicate" and isinstance(parent, dict):
        text = json.dumps(tree)
        pair = json.dumps({key: parent[key]})[1:-1]
        at = text.find(json.dumps(key) + ":")
        return (text[:at] + pair + ", " + text[at:]).encode(), f"duplicate {key!r}"
    if op == "delete":
        del parent[key]
    elif op == "rename" and isinstance(parent, dict):
        parent[key + rng.choice(["_", "x", ".0"])] = parent.pop(key)
    elif op == "wrap":
        parent[key] = [parent[key]]
    elif op == "add" and isinstance(parent, dict):
        parent[rng.choice(["extra", "__metadata__", "dtype", "shape", "data_offsets"])] = _awkward(rng, None)
    else:
        op = "replace"
        parent[key] = _awkward(rng, parent[key])
    return tree, f"{op} {'/'.join(map(str, path))}"


def _split_safetensors(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def mutate(rng: random.Random, folder: Path) -> tuple[str, str]:
    """Damage one file of `folder` in place; returns (file name, what was done)."""
    shards = sorted(folder.glob("model*.safetensors"))
    target = rng.choice(shards * 2 + [folder / "model.safetensors.index.json", folder / "config.json"])
    data = target.read_bytes()
    if target.suffix == ".safetensors":
        header, body = _split_safetensors(data)
        if rng.random() < 0.5:
            new, what = _byte_mutation(rng, data, 8 + struct.unpack("<Q", data[:8])[0])
        else:
            tree, what = _json_mutation(rng, header)
            raw = tree if isinstance(tree, bytes) else json.dumps(tree).encode()
            length = len(raw) if rng.random() < 0.9 else len(raw) + rng.choice([-1, 1, 8])
            new = struct.pack("<Q", max(0, length)) + raw + body
    elif rng.random() < 0.5:
        new, what = _byte_mutation(rng, data, len(data))
    else:
        tree, what = _json_mutation(rng, json.loads(data))
        new = tree if isinstance(tree, bytes) else json.dumps(tree, indent=1).encode()
    target.write_bytes(new)
    return target.name, what


# ---- running one case -------------------------------------------------------------------


def _alarm(signum, frame):
    raise CaseTimeout()


def check_folder(folder: Path, full: bool = True) -> str:
    """'ok' or 'rejected:<ErrorClass>'; raises on anything else. full=False only opens the index
    (and counts a folder that would need a full load as 'unchecked')."""
    from oracle import oracle_answer

    from engine.api import GenerationParams
    from engine.checkpoint import CheckpointIndex
    from engine.errors import OutlierError
    from engine.generation import PromptCacheStore, generate
    from engine.loader import load_streamed_model

    try:
        CheckpointIndex.open(folder)
        if not full:
            return "unchecked"
        loaded = load_streamed_model(folder)
    except OutlierError as exc:
        return f"rejected:{type(exc).__name__}"
    try:
        params = GenerationParams(max_tokens=ANSWER_TOKENS, chat_template=False)
        stats, _ = generate(
            loaded,
            PromptCacheStore(),
            [{"role": "user", "content": PROMPT}],
            params,
            threading.Event(),
            lambda text, token, kind: None,
        )
    except OutlierError as exc:
        raise LateRejection(f"loaded, then {type(exc).__name__} mid-answer: {exc}") from None
    finally:
        loaded.close()
    expected = oracle_answer(folder, lambda tok: tok.encode(PROMPT), ANSWER_TOKENS)
    if list(stats.tokens) != expected:
        raise AssertionError(f"streamed answer {list(stats.tokens)} != resident mlx-lm {expected}")
    return "ok"


def run_cases(
    base: Path, cases: int, seed: int = 0, timeout: float = 20.0, full: bool = True, on_outcome=None, on_start=None
) -> list[Outcome]:
    """Run `cases` mutations of the checkpoint at `base` (left untouched); case i uses seed + i."""
    outcomes = []
    originals = {p.name: p.read_bytes() for p in base.iterdir() if p.is_file()}
    with tempfile.TemporaryDirectory(prefix="outlier-fuzz-") as tmp:
        folder = Path(tmp) / "model"
        shutil.copytree(base, folder)
        previous = signal.signal(signal.SIGALRM, _alarm)
        try:
            for i in range(cases):
                rng = random.Random(seed + i)
                target, what = mutate(rng, folder)
                if on_start is not None:  # before the case: a crash of the process still names it
                    on_start(seed + i, target, what)
                signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    result, detail = check_folder(folder, full), ""
                except CaseTimeout:
                    result, detail = "bug:hang", f"over {timeout}s"
                except Exception as exc:  # the point of the fuzzer: every other exception is a bug
                    where = traceback.extract_tb(exc.__traceback__)[-1]
                    result = f"bug:{type(exc).__name__}"
                    detail = f"{str(exc)[:200]} at {Path(where.filename).name}:{where.lineno}"
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                (folder / target).write_bytes(originals[target])
                outcome = Outcome(seed + i, target, what, result, detail)
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
        finally:
            signal.signal(signal.SIGALRM, previous)
    return outcomes


def base_checkpoint(folder: Path) -> Path:
    from checkpoints import write_checkpoint

    if not (folder / "config.json").exists():
        write_checkpoint(folder, "mixtral", shards=2)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0, help="case i uses seed + i (rerun one with --cases 1)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--verbose", action="store_true", help="print each case before running it")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="folder for the base checkpoint (built there if empty; default: a temp folder)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="outlier-fuzz-base-") as tmp:
        base = base_checkpoint(args.checkpoint or Path(tmp) / "base")
        counts: Counter = Counter()
        bugs: list[Outcome] = []
        start = time.monotonic()

        def report(outcome: Outcome) -> None:
            counts[outcome.result] += 1
            if outcome.is_bug:
                bugs.append(outcome)
                print(
                    f"BUG seed={outcome.seed} {outcome.target} {outcome.mutation}: {outcome.result} {outcome.detail}",
                    flush=True,
                )
            done = sum(counts.values())
            if done % 1000 == 0:
                print(f"{done} cases, {time.monotonic() - start:.0f}s: {dict(counts)}", flush=True)

        start_case = (
            (lambda seed, target, what: print(f"case {seed}: {target} {what}", flush=True)) if args.verbose else None
        )
        run_cases(base, args.cases, args.seed, args.timeout, on_outcome=report, on_start=start_case)
    elapsed = time.monotonic() - start
    print(
        f"{sum(counts.values())} cases in {elapsed:.0f}s ({args.cases / max(elapsed, 1e-9):.0f}/s): "
        + ", ".join(f"{k} {v}" for k, v in counts.most_common())
    )
    print(f"{len(bugs)} bugs" + (f" (first: seed {bugs[0].seed})" if bugs else ""))
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
