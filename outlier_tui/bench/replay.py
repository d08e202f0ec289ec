"""`outlier bench --replay TRACE`: every cache policy replayed on a recorded routing trace.

The replay runs the engine's own ExpertCache and policy classes (engine/cache_policy.py),
one cache call per MoE layer per token as the streamer makes them (the layer's distinct
experts, all protected while the call runs), next to the offline optimum (Belady) and an
oracle told the routing one token ahead. No model, no disk reads.

Trace format (the shared DeepSeek-V2-Lite trace's, `../shared/traces/README.md`): an .npz
with `experts` int [tokens, moe layers, top_k] (expert ids, each row a set) and `offsets`
int [prompts + 1] (prompt i is rows offsets[i]:offsets[i+1]). `record` writes the engine's
own decode routing in it.

A budget is a share of all routed experts (layers x experts), as --cache-mb is of their
bytes. Each policy runs twice per budget: the whole trace as one session through one cache,
and every prompt started cold (a fresh cache and policy at its first token). Figures are
split at the prompt boundary nearest the middle: a policy is chosen on the first half and
must hold on the second.

    python -m outlier_tui.bench.replay record --model DIR --tokens 64 --out routing.npz
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.cache_policy import (
    DEFAULT_POLICY,
    POLICIES,
    BeladyPolicy,
    EvictionPolicy,
    Key,
    NextUsePolicy,
    RouterScorePolicy,
    make_policy,
)
from engine.expert_cache import ExpertCache

DEFAULT_BUDGETS = [5.0, 10.0, 25.0, 50.0]
ORACLE = "next-token-oracle"
IDS_AS_SCORES = "router-score-ids"
# the names every replay reports, in order: the engine's default first
# (the default's own name is left out: the same policy twice)
ONLINE = ["default"] + [n for n in POLICIES if n not in ("router-score", DEFAULT_POLICY)] + [IDS_AS_SCORES]
NAMES = ONLINE + [ORACLE, "belady"]
# replayed prompt by prompt from cold too (the rest only as a session: a replay of the whole
# 94k-token trace takes minutes per policy and budget)
COLD = ("default", "lru", "belady")


class TraceError(ValueError):
    """A trace file that is not in the replay's format."""


@dataclass(frozen=True)
class Routing:
    experts: np.ndarray  # [tokens, layers, top_k] expert ids
    offsets: np.ndarray  # [prompts + 1] token offsets of the prompts

    @property
    def tokens(self) -> int:
        return int(self.experts.shape[0])

    @property
    def layers(self) -> int:
        return int(self.experts.shape[1])

    @property
    def num_experts(self) -> int:
        return int(self.experts.max()) + 1 if self.experts.size else 0

    def middle(self) -> int:
        """The prompt boundary nearest the middle token: where the first half ends."""
        inner = self.offsets[1:-1]
        if not len(inner):
            return self.tokens // 2
        return int(inner[np.abs(inner - self.tokens / 2).argmin()])

    def head(self, tokens: int) -> Routing:
        """The first whole prompts holding at most `tokens` tokens (at least one prompt)."""
        ends = self.offsets[1:]
        keep = max(1, int(np.searchsorted(ends, tokens, side="right")))
        stop = int(ends[keep - 1])
        return Routing(self.experts[:stop], self.offsets[: keep + 1])


def load_routing(path: str | Path) -> Routing:
    """The trace at `path`, checked: a clear TraceError for anything else."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "experts" not in data or "offsets" not in data:
                raise TraceError(f"{path}: no 'experts' and 'offsets' arrays (see outlier_tui/bench/replay.py)")
            experts, offsets = np.asarray(data["experts"]), np.asarray(data["offsets"], dtype=np.int64)
    except OSError as exc:
        raise TraceError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, EOFError) as exc:
        raise TraceError(f"{path} is not an .npz routing trace ({exc})") from None
    if experts.ndim != 3 or experts.shape[0] == 0 or not np.issubdtype(experts.dtype, np.integer):
        raise TraceError(f"{path}: 'experts' must be integer [tokens, layers, top_k], got {experts.shape}")
    if experts.min() < 0:
        raise TraceError(f"{path}: negative expert ids")
    if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(experts):
        raise TraceError(f"{path}: 'offsets' must run from 0 to the number of tokens ({len(experts)})")
    if np.any(np.diff(offsets) <= 0):
        raise TraceError(f"{path}: 'offsets' must increase (every prompt at least one token)")
    return Routing(experts.astype(np.int64), offsets)


def token_calls(experts: np.ndarray) -> list[list[list[Key]]]:
    """Per token, per layer: the call's keys (distinct experts, ascending, as the streamer).
    One tuple object per key, shared: a 94k-token trace has 15M accesses."""
    width = int(experts.max()) + 1 if experts.size else 0
    key = [[(layer, e) for e in range(width)] for layer in range(experts.shape[1])]
    return [[[key[layer][e] for e in sorted(set(row))] for layer, row in enumerate(tok)] for tok in experts.tolist()]


@dataclass
class Counts:
    """Hits and accesses of each half (first, second) and tokens per half."""

    hits: list[int]
    accesses: list[int]
    tokens: list[int]

    def figures(self, half: int | None = None) -> dict:
        pick = [0, 1] if half is None else [half]
        hits, accesses = sum(self.hits[i] for i in pick), sum(self.accesses[i] for i in pick)
        tokens = sum(self.tokens[i] for i in pick)
        return {
            "hit_rate": hits / accesses if accesses else None,
            "misses_per_token": (accesses - hits) / tokens if tokens else None,
        }


class NextTokenOracle:
    """The default policy told the routing one token ahead (the next `layers` calls): it never
    evicts an expert those calls use while another can go. Bounds what any predictor of the
    next token's routing could add to eviction."""

    def __init__(self, calls: Sequence[Sequence[Key]], layers: int, shape: tuple[int, int]) -> None:
        self.inner = NextUsePolicy()
        self.inner.reserve(*shape)
        self._calls, self._window = calls, layers
        self._soon = np.zeros(shape, dtype=np.int32)  # uses in the window ahead of the current call
        self._pos = -1
        for call in calls[:layers]:
            self._add(call, 1)

    def _add(self, call: Sequence[Key], sign: int) -> None:
        for row, e in call:
            self._soon[row, e] += sign

    def begin_call(self, keys: Sequence[Key], bulk: bool = False) -> None:
        self._pos += 1
        if self._pos < len(self._calls):
            self._add(self._calls[self._pos], -1)
        if self._pos + self._window < len(self._calls):
            self._add(self._calls[self._pos + self._window], 1)
        self.inner.begin_call(keys, bulk)

    def on_access(self, key: Key, bulk: bool = False) -> None:
        self.inner.on_access(key, bulk)

    def on_insert(self, key: Key, bulk: bool = False) -> None:
        self.inner.on_insert(key, bulk)

    def on_evict(self, key: Key) -> None:
        self.inner.on_evict(key)

    def choose_victim(self, can_evict: Callable[[Key], bool]) -> Key | None:
        scores = np.where(self._soon > 0, -np.inf, self.inner.victim_scores())
        row, expert = divmod(int(scores.argmax()), scores.shape[1])
        if scores[row, expert] > -np.inf and can_evict((row, expert)):
            return row, expert
        victim = self.inner.choose_victim(lambda k: can_evict(k) and self._soon[k] == 0)
        return victim if victim is not None else self.inner.choose_victim(can_evict)


def _policy(name: str, calls: Sequence[Sequence[Key]], layers: int, shape: tuple[int, int]) -> EvictionPolicy:
    if name == "default":
        return make_policy(DEFAULT_POLICY)
    if name == "belady":
        return BeladyPolicy([key for call in calls for key in call])
    if name == ORACLE:
        return NextTokenOracle(calls, layers, shape)
    if name == IDS_AS_SCORES:
        policy = RouterScorePolicy()
        policy.reserve(*shape)
        return policy
    return make_policy(name)


def replay(routing: Routing, slots: int, name: str, cold: bool) -> Counts:
    """One policy at one slot count: the whole trace as one session, or each prompt cold."""
    middle = routing.middle()
    shape = (routing.layers, routing.num_experts)
    counts = Counts([0, 0], [0, 0], [middle, routing.tokens - middle])
    spans = zip(routing.offsets[:-1], routing.offsets[1:]) if cold else [(0, routing.tokens)]
    for start, stop in spans:
        calls_of = token_calls(routing.experts[start:stop])
        flat = [call for tok in calls_of for call in tok]
        policy = _policy(name, flat, routing.layers, shape)
        cache = ExpertCache(slots, policy)
        scorer = policy if isinstance(policy, RouterScorePolicy) else None
        onehot = np.zeros(shape[1])
        for t, tok in enumerate(calls_of, start):
            half = int(t >= middle)
            for keys in tok:
                plan = cache.plan(keys)
                cache.loaded(keys)
                counts.hits[half] += plan.hits
                counts.accesses[half] += len(keys)
                if scorer is not None:  # the top-k as the router's scores: ids are all a trace has
                    onehot[:] = 0.0
                    onehot[[e for _, e in keys]] = 1.0 / len(keys)
                    scorer.observe(keys[0][0], onehot)
    return counts


def budget_slots(routing: Routing, percent: float) -> int:
    """Slots of a budget: a share of all routed experts, never under one call's experts."""
    total = routing.layers * routing.num_experts
    return max(int(round(total * percent / 100)), routing.experts.shape[2])


def _job(args: tuple[Routing, int, str, bool]) -> Counts:
    return replay(*args)


def run(
    routing: Routing,
    budgets: Sequence[float],
    names: Sequence[str] = NAMES,
    jobs: int = 1,
    progress: Callable[[str], None] = lambda message: None,
    done_file: Path | None = None,
) -> dict:
    """Every policy at every budget, session and cold: the `--replay` JSON. done_file: each
    finished replay is appended there as it ends, and replays already there are not run
    again (the whole trace takes hours: a stopped run resumes)."""
    tasks = [(p, name, cold) for cold in (False, True) for name in names for p in budgets if not cold or name in COLD]
    results = _finished(done_file, routing) if done_file is not None else {}
    todo = [t for t in tasks if t not in results]
    if len(todo) < len(tasks):
        progress(f"{len(tasks) - len(todo)} of {len(tasks)} replays already in {done_file}")
    argv = [(routing, budget_slots(routing, p), name, cold) for p, name, cold in todo]

    def finished(task: tuple[float, str, bool], counts: Counts) -> None:
        p, name, cold = task
        progress(f"{p:g}% {name} {'cold prompts' if cold else 'session'}: done")
        results[task] = counts
        if done_file is not None:
            line = {"task": list(task), "tokens": routing.tokens, "counts": asdict(counts)}
            with done_file.open("a") as f:
                f.write(json.dumps(line) + "\n")

    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            for task, counts in zip(todo, pool.map(_job, argv)):
                finished(task, counts)
    else:
        for task, args in zip(todo, argv):
            finished(task, _job(args))
    out_budgets = []
    for p in budgets:
        policies = {}
        for name in names:
            session, started_cold = results[p, name, False], results.get((p, name, True))
            policies[name] = session.figures() | {"halves": [session.figures(0), session.figures(1)]}
            policies[name]["cold"] = (
                started_cold.figures() | {"halves": [started_cold.figures(0), started_cold.figures(1)]}
                if started_cold
                else None
            )
        out_budgets.append({"percent": p, "slots": budget_slots(routing, p), "policies": policies})
    return {
        "default_policy": DEFAULT_POLICY,
        "tokens": routing.tokens,
        "prompts": len(routing.offsets) - 1,
        "layers": routing.layers,
        "experts": routing.num_experts,
        "top_k": int(routing.experts.shape[2]),
        "halves_split_at_token": routing.middle(),
        "budgets": out_budgets,
        "targets": targets({"budgets": out_budgets}),
    }


def _finished(done_file: Path, routing: Routing) -> dict[tuple[float, str, bool], Counts]:
    """The replays a stopped run finished on this same routing (a torn last line is skipped)."""
    out: dict[tuple[float, str, bool], Counts] = {}
    if not done_file.exists():
        return out
    for line in done_file.read_text().splitlines():
        try:
            entry = json.loads(line)
            p, name, cold = entry["task"]
            if entry["tokens"] == routing.tokens:
                out[float(p), str(name), bool(cold)] = Counts(**entry["counts"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


def targets(result: dict) -> dict:
    """The default policy against issue 21's targets, per half: never more misses than LRU
    at any budget, a hit rate of at least 0.12 at 5%, within 1% of the best online policy's
    misses at 10% and 25%."""
    out: dict = {}
    for half in (0, 1):
        within: dict[str, float | None] = {}
        checks: dict = {"never_worse_than_lru": True, "hit_rate_at_5": None, "within_1pct_of_best": within}
        for b in result["budgets"]:
            pol = b["policies"]
            mine = pol["default"]["halves"][half]["misses_per_token"]
            if "lru" in pol and mine > pol["lru"]["halves"][half]["misses_per_token"]:
                checks["never_worse_than_lru"] = False
            if b["percent"] == 5.0:
                checks["hit_rate_at_5"] = pol["default"]["halves"][half]["hit_rate"]
            if b["percent"] in (10.0, 25.0):
                best = min(pol[n]["halves"][half]["misses_per_token"] for n in pol if n in ONLINE)
                within[f"{b['percent']:g}"] = mine / best if best else None
        out[("first_half", "second_half")[half]] = checks
    return out


def markdown(result: dict) -> str:
    lines = [
        f"## Cache policies replayed: {result['tokens']} tokens, {result['prompts']} prompts, "
        f"{result['layers']} layers x {result['experts']} experts, top-{result['top_k']} "
        f"(default: {result['default_policy']})",
        "",
        f"Halves split at token {result['halves_split_at_token']}. Hit rate, misses/token; session "
        "(one cache for the whole trace) then every prompt started cold.",
    ]
    for b in result["budgets"]:
        lines += [
            "",
            f"### {b['percent']:g}% of experts ({b['slots']} slots)",
            "",
            "| policy | session | 1st half | 2nd half | cold prompts | cold 1st | cold 2nd |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, f in b["policies"].items():
            cold = [f["cold"], *f["cold"]["halves"]] if f["cold"] else [None] * 3
            cells = [f, *f["halves"], *cold]
            lines.append(f"| {name} | " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "Targets of the default (issue 21):", ""]
    for half, checks in result["targets"].items():
        within = ", ".join(f"{k}%: {v:.3f}x best" for k, v in checks["within_1pct_of_best"].items() if v)
        hit5 = checks["hit_rate_at_5"]
        lines.append(
            f"- {half}: never more misses than LRU: {checks['never_worse_than_lru']}; "
            f"hit rate at 5%: {'n/a' if hit5 is None else f'{hit5:.3f}'}; {within}"
        )
    return "\n".join(lines) + "\n"


def _cell(f: dict | None) -> str:
    if f is None or f["hit_rate"] is None:
        return "-"
    return f"{f['hit_rate']:.3f}, {f['misses_per_token']:.1f}"


def record(model: str, tokens: int, out: str | Path, long_prompt: bool = False) -> Routing:
    """The engine's decode routing on the bench workload, written in the replay's format:
    every expert resident (nothing to evict, so the routing is the model's own), each decode
    token's per-layer calls (every layer's top_k) one row."""
    from engine.generation import PromptCacheStore, generate
    from engine.loader import LoadOptions, load_streamed_model
    from outlier_tui.bench import workload

    loaded = load_streamed_model(model, None, LoadOptions(prefetch=False, record_trace=True))
    try:
        streamer = loaded.streamer
        if streamer is None:
            raise SystemExit(f"{model}: no routed experts stream in this model, so there is no routing to record")
        try:
            cache = streamer.sole_group().cache
        except ValueError as e:
            raise SystemExit(f"{model}: {e}; recording its routing is not supported") from None
        if cache.trace is None or cache.trace_calls is None:
            raise SystemExit(f"{model}: no routed experts stream in this model, so there is no routing to record")
        generate(
            loaded,
            PromptCacheStore(),
            workload.messages(long=long_prompt),
            workload.params(tokens),
            threading.Event(),
            lambda *args: None,
        )
        streamer.flush_routing()
        routing = from_cache_record(cache.trace, cache.trace_calls, len(streamer.layers), loaded.info.top_k)
    finally:
        loaded.close()
    np.savez_compressed(out, experts=routing.experts.astype(np.int16), offsets=routing.offsets)
    return routing


def from_cache_record(trace: Sequence[Key], calls: Sequence[Sequence[int]], layers: int, top_k: int) -> Routing:
    """An ExpertCache trace (record_trace) in the replay's format: every run of `layers`
    calls of rows 0..layers-1 with top_k keys each is one decoded token (a prompt's calls,
    with more keys, and the preload are left out); one prompt."""
    rows: list[list[list[int]]] = []
    token: list[list[int]] = []
    start = 0
    for count, _bulk in calls:
        keys = trace[start : start + count]
        start += count
        row = keys[0][0] if keys else -1
        if count == top_k and row == len(token):
            token.append([e for _, e in keys])
            if len(token) == layers:
                rows.append(token)
                token = []
        else:
            token = [[e for _, e in keys]] if count == top_k and row == 0 else []
    if not rows:
        raise TraceError("the recorded trace holds no decoded token")
    experts = np.array(rows, dtype=np.int64)
    return Routing(experts, np.array([0, len(experts)], dtype=np.int64))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m outlier_tui.bench.replay")
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("record", help="write the engine's decode routing as a replayable trace")
    r.add_argument("--model", required=True)
    r.add_argument("--tokens", type=int, default=64)
    r.add_argument("--long-prompt", action="store_true")
    r.add_argument("--out", required=True)
    args = p.parse_args(argv)
    routing = record(args.model, args.tokens, args.out, args.long_prompt)
    print(f"{args.out}: {routing.tokens} tokens x {routing.layers} layers, top-{routing.experts.shape[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
