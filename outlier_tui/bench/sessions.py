"""`outlier bench --sessions`: long prompts and long chats where reads dominate.

Every configuration runs in a fresh process, reads capped by the same cgroup
throttle as `--io-bound` and the model's files evicted from the page cache
first (compute-only excepted). Figures, measured side by side in one run:

- long_prompt_ttft_vs_limit: time to first token of a prompt of several
  prefill chunks at a 25% budget / its limit, max(the same prompt's prefill
  with every expert resident and no reads, the bytes of the distinct experts
  it routes to / the read cap): no engine can beat either;
- prompt_read_ratio: expert bytes read during that prompt / those distinct
  experts' bytes (1.0: each read once), beside the same figure for the old
  order (each chunk through every layer) on the same prompt;
- reopen_ttft_ratio: time to first token of a follow-up in a chat reopened
  after a restart (its KV cache from disk) / the same follow-up in a process
  with no cache (the whole chat prefilled again). Target <= 0.2.

The child half of this module (`python -m outlier_tui.bench.sessions`) runs one
request through engine.Engine, the product's own path, and writes its stats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from outlier_tui.bench import pagecache
from outlier_tui.bench.orchestrate import ConfigRunner, budget_bytes, machine
from outlier_tui.bench.throttle import ReadThrottle, run_throttled
from outlier_tui.bench.workload import LONG_PROMPT

FOLLOW_UP = "Now add type hints to merge_sorted and say what changed, briefly."
TARGETS = {"reopen_ttft_ratio": 0.2, "prompt_read_ratio": 1.05}


@dataclass
class Options:
    model_dir: Path
    disk_bytes_per_s: int = 25_000_000
    budget_percent: float = 25.0
    prefill_step: int = 256  # tokens per prefill chunk (the product's is 2048; CPUs here are slow)
    long_prompt_copies: int = 2  # LONG_PROMPT repeated: several prefill chunks
    answer_tokens: int = 8
    rounds: int = 1  # repeat the throttled figures; medians are reported
    timeout_s: float = 3600.0
    command: str = ""
    progress: Callable[[str], None] = lambda message: None
    notes: list[str] = field(default_factory=list)


def long_prompt(copies: int) -> str:
    parts = [f"File part {i + 1} of {copies}:\n{LONG_PROMPT}" for i in range(copies)]
    return "\n\n".join(parts)


def run(opts: Options) -> dict:
    with tempfile.TemporaryDirectory(prefix="outlier-sessions-") as tmp:
        work = ConfigRunner(Path(tmp), opts.model_dir, opts.timeout_s, opts.progress)
        probe = work.config("probe", [])
        files = [Path(f) for f in probe["files"]]
        return run_throttled(
            files, opts.disk_bytes_per_s, opts.command, lambda throttle: _run(Path(tmp), opts, probe, files, throttle)
        )


def _run(tmp: Path, opts: Options, probe: dict, files: list[Path], throttle: ReadThrottle) -> dict:
    budget = budget_bytes(probe, opts.budget_percent)
    everything = budget_bytes(probe, 100.0)
    prompt = [{"role": "user", "content": long_prompt(opts.long_prompt_copies)}]
    count = iter(range(1, 1000))

    def turn(messages, cache_bytes: int, throttled: bool, *extra: str) -> dict:
        n = next(count)
        msgs, out = tmp / f"{n:02d}-messages.json", tmp / f"{n:02d}-stats.json"
        msgs.write_text(json.dumps(messages))
        argv = [
            sys.executable,
            "-m",
            "outlier_tui.bench.sessions",
            "--model",
            str(opts.model_dir),
            "--messages",
            str(msgs),
            "--json",
            str(out),
            "--cache-bytes",
            str(cache_bytes),
            "--max-tokens",
            str(opts.answer_tokens),
            "--prefill-step",
            str(opts.prefill_step),
            *extra,
        ]
        if throttled:
            pagecache.drop(files)
            res = throttle.run(argv, opts.timeout_s)
            if res.returncode != 0:
                raise RuntimeError(f"a throttled run failed: {res.stderr_tail.strip().splitlines()[-1:]}")
        else:
            import subprocess

            subprocess.run(argv, check=True, timeout=opts.timeout_s, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())

    rate = opts.disk_bytes_per_s
    opts.progress("compute only: the long prompt with every expert resident (unthrottled)")
    compute = turn(prompt, everything, False)
    rounds = []
    for r in range(opts.rounds):
        opts.progress(f"round {r + 1}: the long prompt at {opts.budget_percent:g}%, layer by layer (throttled)")
        layered = turn(prompt, budget, True)
        opts.progress(f"round {r + 1}: the same prompt, each chunk through every layer (throttled)")
        chunked = turn(prompt, budget, True, "--chunk-by-chunk")
        folder = tmp / f"prompt-caches-{r}"
        opts.progress(f"round {r + 1}: a chat's first turn, its cache saved at exit (throttled)")
        first = turn(prompt, budget, True, "--prompt-cache-dir", str(folder))
        chat = prompt + [
            {"role": "assistant", "content": first["answer"]},
            {"role": "user", "content": FOLLOW_UP},
        ]
        opts.progress(f"round {r + 1}: the follow-up after a restart, cache from disk (throttled)")
        reopened = turn(chat, budget, True, "--prompt-cache-dir", str(folder))
        opts.progress(f"round {r + 1}: the same follow-up with no cache (throttled)")
        scratch = turn(chat, budget, True)
        limit = max(compute["time_to_first_token"], layered["prompt_expert_bytes"] / rate)
        rounds.append(
            {
                "long_prompt_tokens": layered["prompt_tokens"],
                "ttft_s": layered["time_to_first_token"],
                "ttft_chunk_by_chunk_s": chunked["time_to_first_token"],
                "compute_only_ttft_s": compute["time_to_first_token"],
                "distinct_expert_bytes": layered["prompt_expert_bytes"],
                "read_limit_s": layered["prompt_expert_bytes"] / rate,
                "long_prompt_ttft_vs_limit": layered["time_to_first_token"] / limit,
                "prompt_read_ratio": layered["prompt_read_ratio"],
                "prompt_read_ratio_chunk_by_chunk": chunked["prompt_bytes_read"] / layered["prompt_expert_bytes"],
                "reopen_ttft_s": reopened["time_to_first_token"],
                "reopen_cached_tokens": reopened["cached_tokens"],
                "reopen_cache_source": reopened["cache_source"],
                "scratch_ttft_s": scratch["time_to_first_token"],
                "scratch_prompt_tokens": scratch["prompt_tokens"],
                "reopen_ttft_ratio": reopened["time_to_first_token"] / scratch["time_to_first_token"],
                # the follow-up's own new tokens route to these experts, cold after a restart: no
                # engine reads them faster than the cap, so reopen_ttft_ratio >= this floor
                "reopen_expert_bytes": reopened["prompt_expert_bytes"],
                "reopen_read_floor_s": reopened["prompt_expert_bytes"] / rate,
                "reopen_ratio_floor": reopened["prompt_expert_bytes"] / rate / scratch["time_to_first_token"],
            }
        )
    keys = [k for k, v in rounds[0].items() if isinstance(v, (int, float))]
    headline = {k: statistics.median(r[k] for r in rounds) for k in keys}
    return {
        "machine": machine(),
        "command": opts.command,
        "model": probe,
        "settings": {
            "disk_bytes_per_s": rate,
            "budget_percent": opts.budget_percent,
            "cache_bytes": budget,
            "prefill_step": opts.prefill_step,
            "answer_tokens": opts.answer_tokens,
            "rounds": opts.rounds,
        },
        "rounds": rounds,
        "headline": headline,
        "targets": TARGETS,
    }


def markdown(result: dict) -> str:
    if "skipped" in result:
        return f"Sessions bench skipped: {result['skipped']}\n"
    h, s = result["headline"], result["settings"]
    rows = [
        ("long prompt", f"{h['long_prompt_tokens']:.0f} tokens in chunks of {s['prefill_step']}"),
        ("TTFT, layer by layer", f"{h['ttft_s']:.2f} s"),
        ("TTFT, each chunk through every layer", f"{h['ttft_chunk_by_chunk_s']:.2f} s"),
        (
            "limit: max(compute only, distinct experts / cap)",
            f"max({h['compute_only_ttft_s']:.2f}, {h['read_limit_s']:.2f}) s",
        ),
        ("**long_prompt_ttft_vs_limit**", f"{h['long_prompt_ttft_vs_limit']:.2f}"),
        ("**prompt_read_ratio** (target <= 1.05)", f"{h['prompt_read_ratio']:.3f}"),
        ("prompt read ratio, chunk by chunk", f"{h['prompt_read_ratio_chunk_by_chunk']:.3f}"),
        (
            "follow-up TTFT, cache from disk",
            f"{h['reopen_ttft_s']:.2f} s ({h['reopen_cached_tokens']:.0f} tokens cached)",
        ),
        (
            "follow-up TTFT, no cache",
            f"{h['scratch_ttft_s']:.2f} s ({h['scratch_prompt_tokens']:.0f} tokens prefilled)",
        ),
        ("**reopen_ttft_ratio** (target <= 0.2)", f"{h['reopen_ttft_ratio']:.3f}"),
        (
            "floor: the follow-up's cold experts / cap / no-cache TTFT",
            f"{h['reopen_expert_bytes'] / 1e6:.0f} MB, {h['reopen_read_floor_s']:.1f} s, {h['reopen_ratio_floor']:.3f}",
        ),
    ]
    out = [
        f"Sessions at {s['budget_percent']:g}% budget, reads capped at {s['disk_bytes_per_s'] / 1e6:g} MB/s, "
        f"medians of {s['rounds']} round(s)",
        "",
        "| figure | value |",
        "| --- | --- |",
        *(f"| {a} | {b} |" for a, b in rows),
        "",
        f"command: `{result['command']}`",
        "",
    ]
    return "\n".join(out)


# ---- the child: one request in this process -----------------------------------


def _child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m outlier_tui.bench.sessions")
    parser.add_argument("--model", required=True)
    parser.add_argument("--messages", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--cache-bytes", type=int, required=True)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--prefill-step", type=int, default=2048)
    parser.add_argument("--prompt-cache-dir")
    parser.add_argument("--chunk-by-chunk", action="store_true", help="the old prefill order, to compare")
    args = parser.parse_args(argv)

    from engine import Engine, GenerationDone, GenerationFailed, GenerationParams, TextDelta, generation
    from engine import prefill as prefill_module

    prefill_module.PREFILL_STEP = args.prefill_step
    if args.chunk_by_chunk:
        layered = prefill_module.prefill

        def chunk_by_chunk(model, streamer, *rest, **kwargs):
            result = layered(model, None, *rest, **kwargs)  # no streamer: each chunk through every layer
            return result

        generation.prefill = chunk_by_chunk  # type: ignore[assignment]
    engine = Engine(prompt_cache_dir=args.prompt_cache_dir)
    try:
        engine.load(args.model, args.cache_bytes).result()
        messages = json.loads(Path(args.messages).read_text())
        start = time.perf_counter()
        answer, done = [], None
        for event in engine.generate(messages, GenerationParams(max_tokens=args.max_tokens, seed=0)):
            if isinstance(event, TextDelta) and event.kind == "answer":
                answer.append(event.text)
            elif isinstance(event, GenerationFailed):
                print(event.message, file=sys.stderr)
                return 1
            elif isinstance(event, GenerationDone):
                done = event
        assert done is not None
        out = asdict(done.stats) | {"answer": "".join(answer), "wall_s": time.perf_counter() - start}
        out["tokens"] = list(out["tokens"])
    finally:
        engine.close()  # saves the chat's caches when a folder is given
    Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
