"""Subcommands of `outlier`. Each module exposes HELP, add_arguments(parser) and run(args) -> int."""

from importlib import import_module

_NAMES = ["chat", "generate", "demo", "bench", "inspect", "serve"]
COMMANDS = {}
for _name in _NAMES:
    try:
        COMMANDS[_name] = import_module(f"outlier_tui.commands.{_name}")
    except ModuleNotFoundError as exc:  # a subcommand not written yet
        if exc.name != f"outlier_tui.commands.{_name}":
            raise
