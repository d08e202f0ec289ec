"""`outlier chat`: the full-screen chat app, or with --plain (or piped input) the line-mode chat."""

from __future__ import annotations

import argparse
import os
import sys

from outlier_tui import arg_types
from outlier_tui.chat_params import CHAT_MAX_TOKENS
from outlier_tui.kv_args import add_kv_arguments

HELP = (
    "chat with a model (the default: a bare `outlier` runs it): full-screen app; --plain or piped input for line mode"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by the full-screen app and the plain mode."""
    parser.add_argument(
        "--model",
        metavar="DIR",
        type=arg_types.model_dir,
        help="an mlx-community MoE model folder (default: the built-in demo model, built on first use)",
    )
    parser.add_argument(
        "--cache-mb",
        metavar="MB",
        type=arg_types.positive_mb,
        help="expert-cache budget in MiB (default: chosen by the engine)",
    )
    add_kv_arguments(parser, on_disk=True)
    parser.add_argument(
        "--theme", metavar="NAME", help="colour theme (app: a theme from themes/; --plain: a Pygments style for code)"
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="line-mode chat instead of the full-screen app (automatic when stdin is not a terminal)",
    )
    parser.add_argument(
        "--chat",
        metavar="ID",
        help="continue chat ID ('last': the most recent; 'new': a new saved chat, also for piped input)",
    )
    parser.add_argument("--no-stats", action="store_true", help="plain mode: no stats line after each answer")
    parser.add_argument(
        "--max-tokens",
        metavar="N",
        type=arg_types.positive_int,
        help=f"longest answer in tokens (default {CHAT_MAX_TOKENS})",
    )
    parser.add_argument(
        "--temperature",
        "--temp",
        metavar="T",
        type=arg_types.temperature,
        help="sampling temperature (default 0: greedy)",
    )
    parser.add_argument(
        "--think",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reasoning models whose template has a switch: think before answering "
        "(--no-think: answer at once); kept per chat",
    )
    parser.add_argument(
        "--show-thinking",
        action="store_true",
        help="piped input: print the model's thinking to stderr (stdout stays the answer)",
    )
    parser.add_argument(
        "--attach-limit-kb",
        metavar="KB",
        type=arg_types.positive_int,
        default=256,
        help="largest file @path may attach, in KiB (default 256)",
    )
    arg_types.add_compute_dtype(parser)
    arg_types.add_page_cache(parser)
    parser.add_argument(
        "--fake-engine", action="store_true", help="use the scripted fake engine, no model (UI demos and tests)"
    )
    parser.add_argument(
        "--fake-reply",
        metavar="FILE",
        help="with --fake-engine: every answer streams this file's text token by token "
        "(<think>...</think> in it streams as thinking)",
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        help="chat through an OpenAI-compatible server (outlier serve, vLLM, SGLang, "
        "mlx_lm.server, ...) instead of loading a model; --model then names the model",
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        default=os.environ.get("OUTLIER_API_KEY"),
        help="API key for --server (default: $OUTLIER_API_KEY)",
    )


def run(args: argparse.Namespace) -> int:
    """Plain mode when asked for or when stdin is a pipe; the Textual app otherwise."""
    if getattr(args, "plain", False) or not sys.stdin.isatty():
        from outlier_tui.plain.main import run_plain

        return run_plain(args)
    from outlier_tui.app import run_app

    return run_app(args)
