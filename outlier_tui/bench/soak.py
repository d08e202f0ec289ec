"""Soak: thousands of generated tokens across many chats at a small expert budget.

Not a CI test (minutes, not seconds). Through the engine facade the UIs use,
it runs chats of several turns each (a new chat resets the KV cache) until
--tokens tokens have been generated, and checks as it goes:

- the expert cache never holds more bytes than the budget (after every token,
  and the engine's own peak at the end);
- RSS at start (the first chat end after a warm-up of --warmup-tokens, once
  MLX's buffers and the cache are warm), middle and end: growth from start to
  end must stay under --max-growth;
- open file descriptors and threads (Python and native) stay flat.

    python -m outlier_tui.bench.soak --model DIR --tokens 10000 --budget-percent 25

Prints a Markdown table and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field

import psutil

QUESTIONS = [
    "Explain how a hash map handles collisions.",
    "Write a haiku about disks.",
    "What is the capital of France, and why?",
    "Summarise the plot of a story about a lighthouse keeper.",
    "List three uses of a binary search tree.",
]


@dataclass
class Sample:
    tokens: int
    rss: int
    fds: int
    threads_py: int
    threads_native: int
    mlx_active: int
    mlx_cache: int  # MLX's buffer cache: freed arrays kept for reuse


@dataclass
class SoakResult:
    tokens: int = 0
    chats: int = 0
    turns: int = 0
    budget: int = 0
    max_cache_seen: int = 0
    cache_peak: int = 0
    over_budget_steps: int = 0
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0


def sample(tokens: int) -> Sample:
    import mlx.core as mx

    proc = psutil.Process()
    return Sample(
        tokens,
        proc.memory_info().rss,
        proc.num_fds(),
        threading.active_count(),
        proc.num_threads(),
        mx.get_active_memory(),
        mx.get_cache_memory(),
    )


def run(
    model_dir: str, tokens: int, budget_percent: float, turns_per_chat: int, max_tokens: int, progress=print
) -> SoakResult:
    from engine import Engine, GenerationDone, GenerationFailed, GenerationParams, TextDelta

    engine = Engine()
    result = SoakResult()
    start = time.monotonic()
    try:
        info = engine.load(model_dir).result()
        budget = int(info.total_expert_bytes * budget_percent / 100)
        budget = max(budget, info.expert_bytes * info.top_k)
        info = engine.load(model_dir, cache_bytes=budget).result()
        result.budget = info.cache_budget_bytes
        while result.tokens < tokens:
            engine.reset().result()
            result.chats += 1
            messages: list[dict] = []
            for turn in range(turns_per_chat):
                question = QUESTIONS[(result.chats + turn) % len(QUESTIONS)]
                messages.append({"role": "user", "content": question})
                params = GenerationParams(max_tokens=max_tokens, temperature=0.8, seed=result.chats * 100 + turn)
                answer = []
                for event in engine.generate(messages, params):
                    if isinstance(event, TextDelta):
                        answer.append(event.text)
                        cached = engine.snapshot().cache_bytes
                        result.max_cache_seen = max(result.max_cache_seen, cached)
                        result.over_budget_steps += cached > result.budget
                    elif isinstance(event, GenerationFailed):
                        raise RuntimeError(event.message)
                    elif isinstance(event, GenerationDone):
                        result.turns += 1
                        result.tokens += event.stats.generation_tokens
                messages.append({"role": "assistant", "content": "".join(answer)})
                if result.tokens >= tokens:
                    break
            # One sample per chat, at its end; "start" is the first (MLX, the cache and a chat's
            # longest KV cache all warm), "middle" the one nearest half-way.
            result.samples.append(sample(result.tokens))
            last = result.samples[-1]
            progress(
                f"soak: {result.tokens}/{tokens} tokens, {result.chats} chats, RSS "
                f"{last.rss / 2**20:.1f} MiB, MLX active {last.mlx_active / 2**20:.1f} MiB, "
                f"buffer cache {last.mlx_cache / 2**20:.1f} MiB"
            )
        result.cache_peak = engine.snapshot().cache_peak_bytes
    finally:
        engine.close()
    result.seconds = time.monotonic() - start
    return result


def report(result: SoakResult, max_growth: float, warmup_tokens: int) -> tuple[str, bool]:
    """Growth is measured from the first chat end past the warm-up (MLX's buffer cache, the
    allocator's arenas and the expert cache fill during the first chats); the first chat's
    figures are shown too."""
    first, end = result.samples[0], result.samples[-1]
    start = next((s for s in result.samples if s.tokens >= warmup_tokens), first)
    middle = min(result.samples, key=lambda s: abs(s.tokens - (start.tokens + end.tokens) / 2))
    growth = (end.rss - start.rss) / start.rss
    checks = {
        "cache bytes <= budget at every token": result.over_budget_steps == 0
        and result.max_cache_seen <= result.budget,
        "engine's cache peak <= budget": result.cache_peak <= result.budget,
        f"RSS growth start->end < {max_growth:.0%}": growth < max_growth,
        "open fds flat": end.fds == start.fds,
        "threads flat": (end.threads_py, end.threads_native) == (start.threads_py, start.threads_native),
    }
    mib = 2**20
    lines = [
        f"{result.tokens} tokens, {result.chats} chats, {result.turns} answers in {result.seconds:.0f} s; "
        f"budget {result.budget / mib:.2f} MiB",
        "",
        "| point | tokens | RSS MiB | MLX active / buffer cache MiB | open fds | threads (Python / native) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in (("first chat", first), ("start (after warm-up)", start), ("middle", middle), ("end", end)):
        lines.append(
            f"| {name} | {s.tokens} | {s.rss / mib:.1f} | {s.mlx_active / mib:.1f} / "
            f"{s.mlx_cache / mib:.1f} | {s.fds} | {s.threads_py} / {s.threads_native} |"
        )
    lines += [
        "",
        f"- RSS growth start->end: {growth:+.2%}",
        f"- largest cache seen after a token: {result.max_cache_seen / mib:.3f} MiB; engine peak "
        f"{result.cache_peak / mib:.3f} MiB; budget {result.budget / mib:.3f} MiB; steps over budget: "
        f"{result.over_budget_steps}",
        "",
    ]
    lines += [f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in checks.items()]
    return "\n".join(lines) + "\n", all(checks.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Soak the engine: many chats, a small budget.")
    parser.add_argument("--model", metavar="DIR", help="an mlx-community MoE folder (default: the demo model)")
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument(
        "--budget-percent",
        type=float,
        default=25.0,
        help="expert-cache budget, percent of all expert bytes (at least one layer's top-k)",
    )
    parser.add_argument("--turns", type=int, default=4, help="answers per chat before a new chat")
    parser.add_argument("--max-tokens", type=int, default=96, help="longest answer")
    parser.add_argument("--max-growth", type=float, default=0.05, help="allowed RSS growth, start to end")
    parser.add_argument(
        "--warmup-tokens",
        type=int,
        default=None,
        help="tokens before the start sample (default: a fifth of --tokens; "
        "MLX's buffer cache fills during the first chats)",
    )
    args = parser.parse_args(argv)
    from outlier_tui.model_choice import resolve_model_dir

    model_dir = str(resolve_model_dir(args.model))
    result = run(
        model_dir,
        args.tokens,
        args.budget_percent,
        args.turns,
        args.max_tokens,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
    )
    warmup = args.warmup_tokens if args.warmup_tokens is not None else args.tokens // 5
    text, ok = report(result, args.max_growth, warmup)
    sys.stdout.write(
        f"command: python -m outlier_tui.bench.soak {' '.join(argv if argv is not None else sys.argv[1:])}\n\n"
    )
    sys.stdout.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
