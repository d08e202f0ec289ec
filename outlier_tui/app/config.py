"""Where the app reads user settings (themes, keymap) from.

One place decides the config directory so themes and keymap agree, and tests
can point it elsewhere with OUTLIER_CONFIG_DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.user_dirs import user_dir

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # pragma: no cover - Python 3.10
    from importlib.abc import Traversable

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["config_dir", "read_toml", "ConfigError", "Traversable"]


class ConfigError(Exception):
    """A user config file exists but cannot be used; the message is one line."""


def config_dir() -> Path:
    """The user's Outlier config folder; OUTLIER_CONFIG_DIR overrides it."""
    return user_dir("config")


def read_toml(path: Traversable) -> dict:
    """Parse a TOML file (a path, or package data), turning every failure into a one-line ConfigError."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
