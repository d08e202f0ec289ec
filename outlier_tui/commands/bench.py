"""`outlier bench`: measure the engine against a resident mlx-lm run, the raw
disk and the optimal cache, side by side in one run; print a Markdown table."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from outlier_tui import arg_types

HELP = "Benchmark the streamed engine: tok/s, hit rate, reads per budget, and five ratios vs baselines."

QUICK = dict(tokens=12, passes=2, rounds=1, resident_passes=1, memcap_tokens=4, raw_mb=256,
             prefetch_budgets=[25.0])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", type=arg_types.model_dir, help="mlx-community MoE folder (default: the demo MoE)")
    parser.add_argument("--budgets", default="100,50,25,10", metavar="LIST",
                        help="expert-cache budgets, percent of all expert bytes (100 and 25 are always run)")
    parser.add_argument("--tokens", type=arg_types.positive_int, default=None, metavar="N",
                        help="tokens decoded per pass (default 48, --quick 12)")
    parser.add_argument("--passes", type=arg_types.positive_int, default=None, metavar="N",
                        help="passes per configuration: 1 cold + N-1 warm (default 2)")
    parser.add_argument("--rounds", type=arg_types.positive_int, default=None, metavar="N",
                        help="repeat every configuration N times round-robin; report medians "
                             "(default 3, --quick 1)")
    parser.add_argument("--reader-threads", type=arg_types.reader_threads, default=4, metavar="N",
                        help=f"concurrent SSD reads, 1 to {arg_types.MAX_READER_THREADS} (default 4)")
    parser.add_argument("--memcap-mb", type=arg_types.non_negative_mb, default=1024, metavar="MB",
                        help="memory limit for the cgroup runs (0 skips them)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer tokens and passes, prefetch on at 25%% only: a few minutes")
    parser.add_argument("--json", metavar="PATH", help="write every figure and the five ratios as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of tok/s and hit rate against budget")
    parser.add_argument("--served", action="store_true",
                        help="only the served figure: decode tok/s through `outlier serve` (one streamed "
                             "client) / in-process, same budget (bench/served.py)")


def run(args: argparse.Namespace) -> int:
    if args.served:
        from bench import served
        from bench.orchestrate import Options

        return served.run(argparse.Namespace(model=args.model, tokens=args.tokens or Options.tokens,
                                             rounds=args.rounds or Options.rounds, cache_mb=None, json=args.json))
    from bench import orchestrate, report
    from bench.workload import parse_budgets
    from engine.errors import OutlierError
    from outlier_tui.model_choice import resolve_model_dir
    from outlier_tui.progress import progress_bar

    try:
        budgets = parse_budgets(args.budgets)
    except ValueError as exc:
        return _fail(f"--budgets: {exc}")
    try:
        with progress_bar("building demo model") as on_progress:
            model_dir = resolve_model_dir(args.model, on_progress=on_progress)
    except OutlierError as exc:
        return _fail(str(exc))
    opts = orchestrate.Options(
        model_dir=Path(model_dir), budgets=budgets,
        tokens=args.tokens or (QUICK["tokens"] if args.quick else orchestrate.Options.tokens),
        passes=args.passes or (QUICK["passes"] if args.quick else orchestrate.Options.passes),
        resident_passes=QUICK["resident_passes"] if args.quick else None,
        memcap_tokens=QUICK["memcap_tokens"] if args.quick else 16,
        rounds=args.rounds or (QUICK["rounds"] if args.quick else orchestrate.Options.rounds),
        prefetch_budgets=QUICK["prefetch_budgets"] if args.quick else None,
        reader_threads=args.reader_threads,
        raw_read_bytes=(QUICK["raw_mb"] if args.quick else 1024) * 1024 * 1024,
        memcap_bytes=int(args.memcap_mb * 1024 * 1024) if args.memcap_mb > 0 else None,
        command="outlier bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["bench"]
        else "outlier bench",
        progress=lambda message: print(f"bench: {message}", file=sys.stderr, flush=True),
    )
    try:
        result = orchestrate.run(opts)
    except (RuntimeError, OSError) as exc:
        return _fail(str(exc))
    sys.stdout.write(report.markdown(result))
    if args.json:
        report.write_json(result, args.json)
    if args.plot:
        from bench.plot import write_plot

        write_plot(result, args.plot)
    return 0


def _fail(message: str) -> int:
    print(f"outlier: {message}", file=sys.stderr)
    return 1

