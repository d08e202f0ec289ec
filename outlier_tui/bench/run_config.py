"""One benchmark configuration in its own process (peak RSS is per process,
MLX memory is released at exit). The orchestrator runs, e.g.:

    python -m outlier_tui.bench.run_config streamed --model DIR --cache-bytes N --prefetch 0 \
        --tokens 64 --passes 2 --json out.json

Modes: `probe` (model sizes, for choosing budgets), `streamed` (the engine),
`resident` (mlx-lm with every weight in memory, same decode loop).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

from engine.cache_policy import DEFAULT_POLICY, POLICIES
from outlier_tui.arg_types import COMPUTE_DTYPES
from outlier_tui.bench import measure, pagecache
from outlier_tui.bench.variants import PREFETCH_VARIANTS


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    result = {"probe": _probe, "streamed": _streamed, "resident": _resident}[args.mode](args)
    result["peak_rss_bytes"] = measure.process_peak_rss()
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m outlier_tui.bench.run_config")
    p.add_argument("mode", choices=["probe", "streamed", "resident"])
    p.add_argument("--model", required=True)
    p.add_argument("--json", required=True, help="where to write the figures")
    p.add_argument("--cache-bytes", type=int, default=0)
    p.add_argument(
        "--prefetch",
        choices=["0", "1", "auto"],
        default="0",
        help="off, on (every part of the pipeline), or decided by the engine at load",
    )
    p.add_argument(
        "--prefetch-mode",
        choices=sorted(PREFETCH_VARIANTS),
        help="prefetch on with one part of the pipeline left out (the I/O-bound study)",
    )
    p.add_argument("--policy", default=DEFAULT_POLICY, choices=sorted(POLICIES), help="cache eviction policy")
    p.add_argument(
        "--no-prompt-favourites",
        action="store_true",
        help="leave a prompt's experts at the policy's cold end (the design before keep_hot)",
    )
    p.add_argument(
        "--uncached-reads",
        action="store_true",
        help="drop what the engine reads from the page cache: every miss is a disk read",
    )
    p.add_argument("--long-prompt", action="store_true", help="the ~500-token prompt (TTFT study)")
    p.add_argument(
        "--trace",
        help="route every MoE layer by this routing trace instead of its router "
        "(a checkpoint of the trace's shape: outlier_tui/bench/trace_model.py)",
    )
    p.add_argument("--reader-threads", type=int, default=4)
    p.add_argument("--compute-dtype", choices=COMPUTE_DTYPES, default="auto", help="streamed and resident alike")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--passes", type=int, default=2, help="pass 1 cold, later passes warm cache")
    p.add_argument("--no-drop", action="store_true", help="leave the page cache alone between passes")
    p.add_argument("--profile", help="write cProfile stats of the last pass here (text)")
    return p


def _probe(args) -> dict:
    from engine.loader import load_streamed_model

    loaded = load_streamed_model(args.model, cache_bytes=None)
    try:
        info = loaded.info
        rows = [loaded.index.moe_layers[layer] for layer in info.moe_layers]
        disk_expert = sum(t.expert_nbytes for t in rows[0].tensors.values()) if rows else 0
        return {
            "model_type": info.model_type,
            "num_layers": info.num_layers,
            "moe_layers": len(info.moe_layers),
            "num_experts": info.num_experts,
            "top_k": info.top_k,
            "expert_bytes": info.expert_bytes,
            "total_expert_bytes": info.total_expert_bytes,
            "resident_bytes": info.resident_bytes,
            "disk_expert_bytes": disk_expert,
            "reads_per_expert": len(rows[0].tensors) if rows else 0,
            "files": [str(f) for f in sorted(loaded.index.file_sizes)],
            "file_bytes": sum(loaded.index.file_sizes.values()),
        }
    finally:
        loaded.close()


def _streamed(args) -> dict:
    from engine.loader import LoadOptions, load_streamed_model
    from outlier_tui.bench import optimal

    files = measure.model_files(args.model)
    telemetry = measure.StepTelemetry()
    start = time.perf_counter()
    loaded = load_streamed_model(
        args.model,
        args.cache_bytes,
        LoadOptions(
            prefetch=_prefetch(args),
            policy=args.policy,
            prompt_favourites=not args.no_prompt_favourites,
            record_trace=True,
            uncached_reads=args.uncached_reads,
            reader_threads=args.reader_threads,
            compute_dtype=args.compute_dtype,
        ),
        telemetry=telemetry,
    )
    load_s = time.perf_counter() - start
    trace_start = None
    try:
        if args.trace:
            from outlier_tui.bench import trace_model

            trace_start = trace_model.install(loaded.model, args.trace)
        streamer = loaded.streamer
        if streamer is None:
            raise SystemExit(f"{args.model}: no routed experts stream in this model, so there is nothing to measure")
        try:  # the offline-optimum replay takes one trace against one budget
            cache = streamer.sole_group().cache
        except ValueError as e:
            raise SystemExit(f"{args.model}: {e}; the benchmark's replay is not supported") from None
        if cache.trace is None or cache.trace_calls is None:
            raise SystemExit(f"{args.model}: no routed experts stream in this model, so there is nothing to measure")
        trace, record = cache.trace, cache.trace_calls  # filled in as the passes run
        telemetry.trace = trace
        before = (lambda i: None) if args.no_drop else (lambda i: pagecache.drop(files))
        profiler = cProfile.Profile() if args.profile else None
        passes, offsets, tokens = _run(loaded, telemetry, args, before, profiler)
        slots = loaded.info.cache_slots
        replay = optimal.compare(trace, slots, count_from=offsets[-1], record=record) if trace else None
        decode_from = passes[-1].get("trace_decode_offset")
        replay_decode = None
        prefill_keys = trace[offsets[-1] : decode_from] if trace and decode_from is not None else []
        if trace and decode_from is not None:
            replay_decode = optimal.compare(trace, slots, count_from=decode_from, record=record)
            replay_decode.pop("lru_miss_batches")
        return {
            "mode": "streamed",
            "cache_bytes": args.cache_bytes,
            "cache_slots": slots,
            "prefetch": streamer.prefetch_enabled,
            "prefetch_mode": args.prefetch_mode or {"0": "off", "1": "on", "auto": "auto"}[args.prefetch],
            "prefetch_decision": streamer.prefetch_decision,
            "policy": args.policy,
            "prompt_favourites": not args.no_prompt_favourites,
            "reader_threads": args.reader_threads,
            "compute_dtype": args.compute_dtype,
            "prefill_distinct_experts": len(set(prefill_keys)),
            "trace": args.trace,
            "trace_start": trace_start,
            "load_s": load_s,
            "passes": passes,
            "tokens": tokens,
            "replay": replay,
            "replay_decode": replay_decode,
            "trace_accesses": len(trace),
        }
    finally:
        loaded.close()


def _resident(args) -> dict:
    import mlx.core as mx
    from mlx.utils import tree_reduce
    from mlx_lm.utils import load

    from engine import compute_dtype
    from engine.api import ModelInfo
    from engine.checkpoint import CheckpointIndex
    from engine.loader import LoadedModel

    start = time.perf_counter()
    model, tokenizer = load(args.model)[:2]
    compute_dtype.cast_half_floats(model, compute_dtype.resolve(args.compute_dtype))  # as the engine casts
    mx.eval(model.parameters())
    load_s = time.perf_counter() - start
    index = CheckpointIndex.open(args.model)
    weight_bytes = tree_reduce(lambda total, v: total + v.nbytes, model.parameters(), 0)
    info = ModelInfo(
        path=str(index.path),
        model_type=index.model_type,
        num_layers=0,
        moe_layers=(),
        num_experts=0,
        top_k=0,
        expert_bytes=0,
        total_expert_bytes=0,
        resident_bytes=weight_bytes,
        cache_budget_bytes=0,
        cache_slots=0,
    )
    telemetry = measure.StepTelemetry()
    loaded = LoadedModel(model, tokenizer, dict(index.config), info, index, None, None, telemetry)
    profiler = cProfile.Profile() if args.profile else None
    passes, _, tokens = _run(loaded, telemetry, args, lambda i: None, profiler)
    return {"mode": "resident", "load_s": load_s, "weight_bytes": weight_bytes, "passes": passes, "tokens": tokens}


def _prefetch(args):
    """--prefetch / --prefetch-mode as load_streamed_model's prefetch argument."""
    if args.prefetch_mode:
        return PREFETCH_VARIANTS[args.prefetch_mode]
    return {"0": False, "1": True, "auto": None}[args.prefetch]


def _run(loaded, telemetry, args, before, profiler):
    """All passes; the last one under the profiler when asked."""
    long = getattr(args, "long_prompt", False)
    if profiler is None or args.passes < 2:
        return measure.run_passes(loaded, telemetry, args.tokens, args.passes, before, long)
    passes, offsets, _ = measure.run_passes(loaded, telemetry, args.tokens, args.passes - 1, before, long)
    profiler.enable()
    last, last_offsets, tokens = measure.run_passes(loaded, telemetry, args.tokens, 1, before, long)
    profiler.disable()
    stream = open(args.profile, "w")
    with stream:
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(40)
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(25)
    return passes + last, offsets + [last_offsets[0]], tokens


if __name__ == "__main__":
    sys.exit(main())
