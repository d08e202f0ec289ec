"""The `outlier` command. Each subcommand lives in its own module under
outlier_tui.commands; this file only wires arguments to them."""

from __future__ import annotations

import argparse
import signal
import sys

from outlier_tui import termination
from outlier_tui.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="outlier",
        description="Chat with Mixture-of-Experts models whose experts stream from the SSD.",
        epilog="A bare `outlier` (or `outlier --model DIR`, any chat option) opens the chat app, "
        "the same as `outlier chat`. `outlier COMMAND --help` shows a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def _version() -> str:
    """The installed package's version (a source checkout run without installing says so)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("outlier")
    except PackageNotFoundError:
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["chat", *argv]  # `outlier --server URL`, `outlier --model DIR`: options of the chat app
    args = parser.parse_args(argv)
    if args.command is None:  # bare `outlier` opens the chat app
        args = parser.parse_args(["chat", *argv])
    termination.install()
    try:
        return int(COMMANDS[args.command].run(args) or 0)
    except termination.Terminated as exc:
        print(f"outlier: stopped by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("outlier: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
