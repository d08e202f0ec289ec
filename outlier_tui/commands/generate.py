"""`outlier generate`: one prompt in, the streamed answer on stdout.

Progress and errors go to stderr; errors are one line and exit non-zero. A
reasoning model's thinking never reaches stdout: --show-thinking prints it
to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from outlier_tui import arg_types
from outlier_tui.commands.failure import fail as _fail
from outlier_tui.commands.failure import os_error_line
from outlier_tui.kv_args import add_kv_arguments

HELP = "Answer one prompt with a local MoE model and print the answer as it streams."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", metavar="DIR", type=arg_types.model_dir, help="mlx-community model folder (default: the demo MoE)"
    )
    parser.add_argument("--prompt", required=True, help="the prompt text ('-' reads standard input)")
    parser.add_argument(
        "--max-tokens",
        type=arg_types.positive_int,
        default=256,
        metavar="N",
        help="longest answer in tokens (stops earlier at the model's context limit)",
    )
    parser.add_argument(
        "--temp",
        "--temperature",
        type=arg_types.temperature,
        default=0.0,
        metavar="T",
        help="sampling temperature (0: greedy)",
    )
    parser.add_argument(
        "--top-p",
        type=arg_types.top_p,
        default=1.0,
        metavar="P",
        help="nucleus sampling: keep the most likely tokens up to this mass (0 < P <= 1)",
    )
    parser.add_argument(
        "--seed", type=arg_types.seed, default=None, metavar="S", help=f"random seed, 0 to {arg_types.MAX_SEED}"
    )
    parser.add_argument(
        "--cache-mb",
        type=arg_types.positive_mb,
        default=None,
        metavar="MB",
        help="expert-cache budget in MiB (default: chosen from free memory)",
    )
    add_kv_arguments(parser, on_disk=False)
    parser.add_argument(
        "--no-chat-template", action="store_true", help="feed the prompt verbatim instead of as one user message"
    )
    parser.add_argument(
        "--prefetch",
        choices=["auto", "on", "off"],
        default="auto",
        help="read the next layer's predicted experts ahead (default auto: on where "
        "the engine measures reads costing more than the prediction)",
    )
    arg_types.add_reader_threads(parser)
    arg_types.add_compute_dtype(parser)
    arg_types.add_page_cache(parser)
    parser.add_argument(
        "--think",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reasoning models whose template has a switch: think first or not (default: the template's)",
    )
    parser.add_argument(
        "--show-thinking", action="store_true", help="print the model's thinking to stderr (stdout stays the answer)"
    )
    parser.add_argument("--stats-json", metavar="PATH", help="write generation statistics as JSON")


def run(args: argparse.Namespace) -> int:
    from engine import GenerationParams, OutlierError
    from outlier_tui.core.chat import one_off_turn
    from outlier_tui.engine_adapter import make_engine
    from outlier_tui.kv_args import kv_engine_options
    from outlier_tui.model_choice import DEMO_BUILD_LABEL, resolve_model_dir
    from outlier_tui.one_shot import answer_once
    from outlier_tui.progress import progress_bar
    from outlier_tui.std_streams import read_all, silence_stdout

    if sys.stdout is None:
        return _fail("standard output is closed: redirect it to a file or /dev/null.")
    engine = None
    try:
        prompt = read_all(sys.stdin) if args.prompt == "-" else args.prompt
        with progress_bar(DEMO_BUILD_LABEL) as on_progress:
            model_dir = resolve_model_dir(args.model, on_progress=on_progress)
        engine = make_engine(
            engine_options=dict(
                prefetch={"auto": None, "on": True, "off": False}[args.prefetch],
                reader_threads=args.reader_threads,
                compute_dtype=args.compute_dtype,
                page_cache=arg_types.PAGE_CACHE[args.page_cache],
                **kv_engine_options(args),
            )
        )
        cache_bytes = None if args.cache_mb is None else int(args.cache_mb * 1024 * 1024)
        info = engine.load(str(model_dir), cache_bytes).result()
        if info.notice:
            print(f"outlier: {info.notice}", file=sys.stderr)
        if info.context_length and args.max_tokens >= info.context_length:
            print(
                f"outlier: --max-tokens {args.max_tokens} is beyond the model's context of "
                f"{info.context_length} tokens; the answer stops at the context limit.",
                file=sys.stderr,
            )
        params = GenerationParams(
            max_tokens=args.max_tokens,
            temperature=args.temp,
            top_p=args.top_p,
            seed=args.seed,
            chat_template=not args.no_chat_template,
            enable_thinking=args.think,
        )

        answered = answer_once(
            lambda on_part: one_off_turn(engine, prompt, params, on_part),
            sys.stdout,
            sys.stderr,
            show_thinking=args.show_thinking,
        )
        result = answered.result
        if answered.status != 0 or result is None:
            return answered.status
        if args.stats_json and result.stats is not None:
            stats = asdict(result.stats)
            stats["tokens"] = list(stats["tokens"])
            Path(args.stats_json).write_text(json.dumps(stats, indent=2) + "\n")
        return 0
    except BrokenPipeError:  # stdout closed before the answer began (the notice line)
        silence_stdout(sys.stdout)
        return 141
    except OutlierError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(os_error_line(exc))
    finally:
        if engine is not None:
            engine.close()
