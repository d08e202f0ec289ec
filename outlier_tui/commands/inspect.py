"""`outlier inspect DIR`: how a model folder will run here, from its headers alone.

Reads config.json and the safetensors headers (never tensor data), so it is
instant even on a 220 GB folder; prints the expert layout, byte counts, the
default cache budget, predicted peak memory and a verdict.
"""

from __future__ import annotations

import argparse
import json
import sys

from outlier_tui import arg_types

HELP = "say how a model folder will run on this machine (reads headers only)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="DIR", help="mlx-community model folder")
    parser.add_argument(
        "--memory",
        metavar="GB",
        type=arg_types.positive(float, "a number of GB"),
        help="predict for a machine with this much memory (default: this one)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from engine.errors import OutlierError
    from engine.inspect_model import format_report, inspect_model

    memory = int(args.memory * 1e9) if args.memory else None
    try:
        report = inspect_model(args.model, memory)
    except OutlierError as exc:
        print(f"outlier: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=1) if args.json else format_report(report))
    return 0 if report.fits else 2
