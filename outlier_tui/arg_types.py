"""argparse types for every numeric or path option of the `outlier` commands.

Checking values here means a bad flag ends in argparse's one-line usage error
(exit status 2) before a model is loaded, instead of failing deep inside the
engine. Each factory returns a callable for `add_argument(type=...)`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

MAX_READER_THREADS = 64
COMPUTE_DTYPES = ("auto", "float32", "bfloat16", "float16")  # engine.compute_dtype.CHOICES, without MLX
MAX_SEED = 2**64 - 1  # what mx.random.seed accepts


def number(
    kind: type, what: str, *, low: float | None = None, high: float | None = None, low_inclusive: bool = True
) -> Callable[[str], float | int]:
    """A finite number of `kind` within [low, high] (or (low, high] when not low_inclusive)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if low is not None and (value < low or (value == low and not low_inclusive)):
            bound = f"at least {low}" if low_inclusive else f"more than {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {text}")
        return value

    return parse


def positive(kind: type, what: str) -> Callable[[str], float | int]:
    """A finite number of `kind` above zero."""
    return number(kind, what, low=0, low_inclusive=False)


def non_empty(what: str) -> Callable[[str], str]:
    """A string that is not empty (an empty --model must not silently mean the demo)."""

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError("must not be empty")
        return text

    return parse


positive_mb = positive(float, "a number of MiB")
non_negative_mb = number(float, "a number of MiB", low=0)
positive_int = positive(int, "a whole number")
non_negative_int = number(int, "a whole number", low=0)
port = number(int, "a TCP port", low=0, high=65535)
reader_threads = number(int, "a whole number of threads", low=1, high=MAX_READER_THREADS)
seed = number(int, "a whole number", low=0, high=MAX_SEED)
temperature = number(float, "a temperature", low=0)
top_p = number(float, "a probability", low=0, high=1, low_inclusive=False)
model_dir = non_empty("a model folder")


def add_compute_dtype(parser: argparse.ArgumentParser) -> None:
    """--compute-dtype, the same flag wherever a command runs a model (engine/compute_dtype.py)."""
    parser.add_argument(
        "--compute-dtype",
        choices=COMPUTE_DTYPES,
        default="auto",
        help="dtype the model computes in (default auto: the checkpoint's on Metal and CUDA, "
        "float32 on the CPU, whose half-precision kernels are 10-40x slower)",
    )


PAGE_CACHE = {"auto": None, "on": True, "off": False}


def add_page_cache(parser: argparse.ArgumentParser) -> None:
    """--page-cache, the same flag wherever a command loads a model (engine/page_cache.py)."""
    parser.add_argument(
        "--page-cache",
        choices=list(PAGE_CACHE),
        default="auto",
        help="expert reads through the OS page cache (on) or past it (off); default auto: "
        "decided at load from a short measurement, and reported",
    )


def add_reader_threads(parser: argparse.ArgumentParser, default: int | None = None) -> None:
    """--reader-threads, the same flag wherever a command reads experts (default None: the
    engine's, engine.reader.default_reader_threads)."""
    said = "4, or one per core where there are fewer" if default is None else str(default)
    parser.add_argument(
        "--reader-threads",
        type=reader_threads,
        default=default,
        metavar="N",
        help=f"concurrent SSD reads, 1 to {MAX_READER_THREADS} (default {said})",
    )
