"""The prompt-cache options `chat`, `generate` and `serve` share (engine.prompt_cache)."""

from __future__ import annotations

import argparse
from typing import Any

from outlier_tui import arg_types

MIB = 1024 * 1024


def add_kv_arguments(parser: argparse.ArgumentParser, on_disk: bool) -> None:
    parser.add_argument(
        "--kv-cache-mb",
        metavar="MB",
        type=arg_types.positive_mb,
        help="memory for the KV caches of every chat or client, least recently used out first "
        "(default: a quarter of the expert cache's budget, at least 512)",
    )
    parser.add_argument(
        "--kv-bits",
        type=int,
        choices=(4, 8),
        help="quantize KV caches to 4 or 8 bits (mlx-lm's QuantizedKVCache): longer contexts in "
        "the same memory, but answers change a little (default: off)",
    )
    if on_disk:
        parser.add_argument(
            "--prompt-cache-disk-mb",
            metavar="MB",
            type=arg_types.non_negative_int,
            default=4096,
            help="disk for chats' KV caches kept between runs, oldest out first (default 4096; 0: keep none)",
        )


def kv_engine_options(args: argparse.Namespace, cache_dir: str | None = None) -> dict[str, Any]:
    """Engine(...) keyword arguments for these options; cache_dir: where chats' caches persist."""
    kv_mb = getattr(args, "kv_cache_mb", None)
    disk_mb = getattr(args, "prompt_cache_disk_mb", 0)
    return dict(
        kv_cache_bytes=None if kv_mb is None else int(kv_mb * MIB),
        kv_bits=getattr(args, "kv_bits", None),
        prompt_cache_dir=cache_dir if disk_mb else None,
        prompt_cache_disk_bytes=disk_mb * MIB if disk_mb else None,
    )
