"""Subcommands of `outlier`. Each module exposes HELP, add_arguments(parser) and run(args) -> int.

Every module is imported eagerly: a missing or broken one (a bad install) fails
here with its ImportError instead of hiding a command from `outlier --help`.
"""

from importlib import import_module
from types import ModuleType

NAMES = ("chat", "generate", "demo", "bench", "inspect", "serve")
COMMANDS: dict[str, ModuleType] = {name: import_module(f"outlier_tui.commands.{name}") for name in NAMES}
