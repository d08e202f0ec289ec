"""`outlier bench`: measure the engine against a resident mlx-lm run, the raw
disk and the optimal cache, side by side in one run; print a Markdown table."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from outlier_tui import arg_types
from outlier_tui.bench import orchestrate
from outlier_tui.commands.failure import fail as _fail

HELP = "Benchmark the streamed engine: tok/s, hit rate, reads per budget, and five ratios vs baselines."

QUICK: dict[str, Any] = dict(
    tokens=12, passes=2, rounds=1, resident_passes=1, memcap_tokens=4, raw_mb=256, prefetch_budgets=[25.0]
)
# --io-bound --quick: the short prompt (a cold prefill reads ~2/3 of all experts whatever its
# length), 25% only; enough tokens that the full cache evicts on every step
IO_QUICK: dict[str, Any] = dict(tokens=24, budgets=[25.0])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", metavar="DIR", type=arg_types.model_dir, help="mlx-community MoE folder (default: the demo MoE)"
    )
    parser.add_argument(
        "--budgets",
        nargs="+",
        default=None,
        metavar="LIST",
        help="expert-cache budgets, percent of all expert bytes, comma- or space-separated "
        "(default 100,50,25,10, where 100 and 25 are always run; --replay: 5 10 25 50)",
    )
    parser.add_argument(
        "--tokens",
        type=arg_types.positive_int,
        default=None,
        metavar="N",
        help=f"tokens decoded per pass (default {orchestrate.Options.tokens}, --quick {QUICK['tokens']})",
    )
    parser.add_argument(
        "--passes",
        type=arg_types.positive_int,
        default=None,
        metavar="N",
        help=f"passes per configuration: 1 cold + N-1 warm (default {orchestrate.Options.passes})",
    )
    parser.add_argument(
        "--rounds",
        type=arg_types.positive_int,
        default=None,
        metavar="N",
        help="repeat every configuration N times round-robin; report medians "
        f"(default {orchestrate.Options.rounds}, --quick {QUICK['rounds']})",
    )
    arg_types.add_reader_threads(parser, default=4)  # as every recorded figure was measured
    arg_types.add_compute_dtype(parser)
    parser.add_argument(
        "--memcap-mb",
        type=arg_types.non_negative_mb,
        default=1024,
        metavar="MB",
        help="memory limit for the cgroup runs (0 skips them)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer tokens and passes, prefetch on at 25%% only: a few minutes"
    )
    parser.add_argument("--json", metavar="PATH", help="write every figure and the five ratios as JSON")
    parser.add_argument(
        "--plot",
        metavar="PATH",
        help="write a PNG of tok/s and hit rate against budget (needs matplotlib: pip install 'outlier[bench]')",
    )
    parser.add_argument(
        "--replot",
        metavar="JSON",
        help="instead of measuring: redraw --plot from the --json file of an earlier run",
    )
    parser.add_argument(
        "--io-bound",
        action="store_true",
        help="instead: the I/O-bound study, reads capped by a cgroup (needs root; "
        "skips with a message where reads cannot be throttled)",
    )
    parser.add_argument(
        "--trace",
        metavar="TRACE",
        help="--io-bound on real routing: a random checkpoint of this routing trace's shape, "
        "routed by the trace (outlier_tui/bench/iobound_trace.py)",
    )
    parser.add_argument(
        "--host-overhead",
        action="store_true",
        help="only --io-bound's host_overhead_ms_per_token (default settings at 25%%, unthrottled, "
        "no root needed), --rounds times (default 3): the median",
    )
    parser.add_argument(
        "--disk-mbps",
        type=arg_types.positive(float, "a number of MB/s"),
        default=25.0,
        metavar="N",
        help="--io-bound read cap in MB/s (default 25: reads ~85%% of a demo token)",
    )
    parser.add_argument(
        "--prefetch-variants",
        default="",
        metavar="LIST",
        help="--io-bound: also run these prefetch variants at 25%% ('all', or names: "
        "today, today+prefill, today+early, today+demand-first, "
        "today+cancel-stale, today+cold-admit, all)",
    )
    parser.add_argument(
        "--sessions",
        action="store_true",
        help="instead: long prompts and long chats, reads capped as --io-bound: a long prompt's TTFT / its "
        "limit, prompt_read_ratio, and a reopened chat's follow-up TTFT / the same from scratch "
        "(outlier_tui/bench/sessions.py; needs root)",
    )
    parser.add_argument(
        "--prefill-step",
        type=arg_types.positive_int,
        default=None,
        metavar="N",
        help="--sessions: tokens per prefill chunk (default 256, --quick 128, so a prompt of several chunks "
        "runs in minutes on a CPU; the engine's own is 2048)",
    )
    parser.add_argument(
        "--replay",
        metavar="TRACE",
        help="instead: replay every cache policy on a routing trace (.npz, see "
        "outlier_tui/bench/replay.py; e.g. ../shared/traces/deepseek-v2-lite-chat-routing.npz), "
        "no model, no reads",
    )
    parser.add_argument(
        "--replay-tokens",
        type=arg_types.positive_int,
        default=None,
        metavar="N",
        help="--replay only the first whole prompts up to N tokens (default: the whole trace)",
    )
    parser.add_argument(
        "--jobs",
        type=arg_types.positive_int,
        default=1,
        metavar="N",
        help="--replay: policies replayed in N processes at once (default 1)",
    )
    parser.add_argument(
        "--served",
        action="store_true",
        help="only the served figure: decode tok/s through `outlier serve` (one streamed "
        "client) / in-process, same budget (outlier_tui/bench/served.py)",
    )


def run(args: argparse.Namespace) -> int:
    if args.plot or args.replot:
        from outlier_tui.bench.plot import unavailable

        why = unavailable()
        if why:  # say so before minutes of measuring, not after
            return _fail(why)
    if args.replot:
        return _replot(args.replot, args.plot)
    budget_text = ",".join(args.budgets) if args.budgets else None
    if args.replay:
        return _replay(args, budget_text)
    if args.served:
        from outlier_tui.bench import served

        return served.run(
            argparse.Namespace(
                model=args.model,
                tokens=args.tokens or orchestrate.Options.tokens,
                rounds=args.rounds or orchestrate.Options.rounds,
                cache_mb=None,
                json=args.json,
            )
        )
    from engine.errors import OutlierError
    from outlier_tui.bench import report
    from outlier_tui.bench.workload import parse_budgets
    from outlier_tui.model_choice import resolve_model_dir
    from outlier_tui.progress import progress_bar

    try:
        budgets = parse_budgets(budget_text or "100,50,25,10")
    except ValueError as exc:
        return _fail(f"--budgets: {exc}")
    try:
        variants = _variants(args.prefetch_variants)
    except ValueError as exc:
        return _fail(str(exc))
    if args.io_bound and args.trace:
        return _io_bound_trace(args, budget_text)
    try:
        with progress_bar("building demo model") as on_progress:
            model_dir = resolve_model_dir(args.model, on_progress=on_progress)
    except OutlierError as exc:
        return _fail(str(exc))
    if args.host_overhead:
        return _host_overhead(args, Path(model_dir))
    if args.sessions:
        return _sessions(args, Path(model_dir))
    if args.io_bound:
        return _io_bound(args, Path(model_dir), variants)
    opts = orchestrate.Options(
        model_dir=Path(model_dir),
        budgets=budgets,
        tokens=args.tokens or (QUICK["tokens"] if args.quick else orchestrate.Options.tokens),
        passes=args.passes or (QUICK["passes"] if args.quick else orchestrate.Options.passes),
        resident_passes=QUICK["resident_passes"] if args.quick else None,
        memcap_tokens=QUICK["memcap_tokens"] if args.quick else 16,
        rounds=args.rounds or (QUICK["rounds"] if args.quick else orchestrate.Options.rounds),
        prefetch_budgets=QUICK["prefetch_budgets"] if args.quick else None,
        reader_threads=args.reader_threads,
        compute_dtype=args.compute_dtype,
        raw_read_bytes=(QUICK["raw_mb"] if args.quick else 1024) * 1024 * 1024,
        memcap_bytes=int(args.memcap_mb * 1024 * 1024) if args.memcap_mb > 0 else None,
        command=_command(),
        progress=_say,
    )
    try:
        result = orchestrate.run(opts)
    except (RuntimeError, OSError) as exc:
        return _fail(str(exc))
    sys.stdout.write(report.markdown(result))
    if args.json:
        report.write_json(result, args.json)
    if args.plot:
        from outlier_tui.bench.plot import write_plot

        return _draw(write_plot, result, args.plot)
    return 0


def _replot(json_path: str, plot_path: str | None) -> int:
    """`--replot JSON --plot PNG`: the figure of a saved run, nothing measured."""
    import json

    from outlier_tui.bench.plot import write_any
    from outlier_tui.commands.failure import os_error_line

    if not plot_path:
        return _fail("--replot needs --plot PATH: where to write the figure")
    try:
        result = json.loads(Path(json_path).read_text())
    except OSError as exc:
        return _fail(f"--replot: cannot read {json_path}: {os_error_line(exc)}")
    except ValueError as exc:
        return _fail(f"--replot: {json_path} is not JSON ({exc}); pass the file `outlier bench --json` wrote")
    try:
        return _draw(write_any, result, plot_path)
    except (KeyError, TypeError, AttributeError) as exc:
        return _fail(f"--replot: {json_path} is not a file `outlier bench --json` wrote (missing {exc})")
    except ValueError as exc:
        return _fail(f"--replot: {json_path}: {exc}")


def _draw(write: Callable[[Any, str], None], result: Any, path: str) -> int:
    """Write one figure; a path that cannot be written is one line, the run's output is already out."""
    from outlier_tui.commands.failure import os_error_line

    try:
        write(result, path)
    except OSError as exc:
        return _fail(f"--plot: cannot write {path}: {os_error_line(exc)}")
    return 0


def _command() -> str:
    return (
        "outlier bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if sys.argv[1:2] == ["bench"]
        else "outlier bench"
    )


def _variants(text: str) -> list[str]:
    from outlier_tui.bench.variants import PREFETCH_VARIANTS

    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(PREFETCH_VARIANTS)
    unknown = [n for n in names if n not in PREFETCH_VARIANTS]
    if unknown:
        raise ValueError(
            f"--prefetch-variants: unknown {', '.join(unknown)}; choose from {', '.join(PREFETCH_VARIANTS)} or all"
        )
    return names


def _io_bound(args: argparse.Namespace, model_dir: Path, variants: list[str]) -> int:
    """The I/O-bound study (outlier_tui.bench.iobound); prints its tables, writes its JSON and plot."""
    from outlier_tui.bench import iobound, iobound_report

    opts = iobound.Options(
        model_dir=model_dir,
        disk_bytes_per_s=int(args.disk_mbps * 1e6),
        budgets=IO_QUICK["budgets"] if args.quick else [25.0, 10.0],
        tokens=args.tokens or (IO_QUICK["tokens"] if args.quick else 32),
        long_prompt=not args.quick,
        variants=variants,
        reader_threads=args.reader_threads,
        host_rounds=args.rounds or (2 if args.quick else 3),
        command=_command(),
        progress=_say,
    )
    try:
        result = iobound.run(opts)
    except (RuntimeError, OSError) as exc:
        return _fail(str(exc))
    sys.stdout.write(iobound_report.markdown(result))
    if "skipped" in result:
        print(f"outlier: {result['skipped']}", file=sys.stderr)
    if args.json:
        iobound_report.write_json(result, args.json)
    if args.plot and "skipped" not in result:
        from outlier_tui.bench.plot import write_iobound_plot

        return _draw(write_iobound_plot, result, args.plot)
    return 0


def _report(table: str, result: dict, json_path: str | None) -> int:
    """A study's table on stdout, why it skipped on stderr, its figures as JSON where asked."""
    import json

    from outlier_tui.commands.failure import os_error_line

    sys.stdout.write(table)
    if "skipped" in result:
        print(f"outlier: {result['skipped']}", file=sys.stderr)
    if json_path:
        try:
            Path(json_path).write_text(json.dumps(result, indent=1) + "\n")
        except OSError as exc:
            return _fail(f"--json: cannot write {json_path}: {os_error_line(exc)}")
    return 0


def _sessions(args: argparse.Namespace, model_dir: Path) -> int:
    """Long prompts and long chats where reads dominate (outlier_tui.bench.sessions)."""
    from outlier_tui.bench import sessions

    opts = sessions.Options(
        model_dir=model_dir,
        disk_bytes_per_s=int(args.disk_mbps * 1e6),
        prefill_step=args.prefill_step or (128 if args.quick else 256),
        long_prompt_copies=1 if args.quick else 2,
        rounds=args.rounds or 1,
        command=_command(),
        progress=_say,
    )
    try:
        result = sessions.run(opts)
    except (RuntimeError, OSError) as exc:
        return _fail(str(exc))
    return _report(sessions.markdown(result), result, args.json)


def _io_bound_trace(args: argparse.Namespace, budget_text: str | None) -> int:
    """`--io-bound --trace TRACE`: the I/O-bound study on a trained model's routing."""
    from outlier_tui.bench import iobound_trace
    from outlier_tui.bench.replay import TraceError, load_routing
    from outlier_tui.bench.workload import parse_budgets

    try:
        budgets = parse_budgets(budget_text) if budget_text else [25.0, 10.0]
        load_routing(args.trace)  # a bad trace is one line now, not after building a model
    except ValueError as exc:  # TraceError included
        return _fail(f"--trace: {exc}" if isinstance(exc, TraceError) else f"--budgets: {exc}")
    opts = iobound_trace.Options(
        trace=Path(args.trace),
        disk_bytes_per_s=int(args.disk_mbps * 1e6),
        budgets=budgets,
        tokens=args.tokens or 32,
        reader_threads=args.reader_threads,
        command=_command(),
        progress=_say,
    )
    try:
        result = iobound_trace.run(opts)
    except (RuntimeError, OSError) as exc:
        return _fail(str(exc))
    return _report(iobound_trace.markdown(result), result, args.json)


def _replay(args: argparse.Namespace, budget_text: str | None) -> int:
    """`--replay TRACE`: every cache policy on a recorded routing (outlier_tui.bench.replay)."""
    from outlier_tui.bench import replay
    from outlier_tui.bench.workload import parse_budgets

    try:
        budgets = parse_budgets(budget_text) if budget_text else replay.DEFAULT_BUDGETS
    except ValueError as exc:
        return _fail(f"--budgets: {exc}")
    try:
        routing = replay.load_routing(args.replay)
    except replay.TraceError as exc:
        return _fail(f"--replay: {exc}")
    if args.replay_tokens:
        routing = routing.head(args.replay_tokens)
    # finished replays go here as they end, and a rerun of the same command resumes from it
    done_file = Path(f"{args.json}.partial") if args.json else None
    result = replay.run(routing, budgets, jobs=args.jobs, progress=_say, done_file=done_file)
    result["command"] = _command()
    sys.stdout.write(replay.markdown(result))
    prefetch_table = ""
    if routing.layers > 1:
        from outlier_tui.bench import prefetch_replay

        result["prefetch"] = prefetch_replay.run(routing, progress=_say)
        prefetch_table = "\n" + prefetch_replay.markdown(result["prefetch"])
    status = _report(prefetch_table, result, args.json)
    if status == 0 and done_file is not None:
        done_file.unlink(missing_ok=True)  # the JSON holds every replay now
    return status


def _host_overhead(args: argparse.Namespace, model_dir: Path) -> int:
    """--io-bound's host-overhead run alone, a few times: prints each and the median."""
    from outlier_tui.bench import iobound, iobound_report

    opts = iobound.Options(
        model_dir=model_dir,
        tokens=args.tokens or IO_QUICK["tokens"],
        reader_threads=args.reader_threads,
        host_rounds=args.rounds or 3,
        command=_command(),
        progress=_say,
    )
    try:
        result = iobound.host_overhead(opts)
    except (RuntimeError, OSError) as exc:
        return _fail(str(exc))
    sys.stdout.write(iobound_report.host_markdown(result))
    if args.json:
        iobound_report.write_host_json(result, args.json)
    return 0


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)
