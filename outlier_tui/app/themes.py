"""Colour themes as TOML data files, turned into textual.theme.Theme objects.

Bundled themes are package data of `outlier_tui` (`outlier_tui/themes`, a link to
the repository's top-level `themes/` folder), found with importlib.resources in a
checkout, an editable install and a wheel alike; a user's own themes live in
`<config dir>/themes` and override bundled ones of the same name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

from outlier_tui.app.config import ConfigError, Traversable, config_dir, read_toml

DEFAULT_DARK = "outlier-dark"
DEFAULT_LIGHT = "outlier-light"
FALLBACK_THEME = "textual-dark"  # built into Textual: used if no theme file is found

_FIELDS = {f.name: f for f in dataclasses.fields(Theme)}
_COLOR_FIELDS = (
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)


def bundled_theme_dir() -> Traversable:
    """The folder of the themes shipped with Outlier (package data of outlier_tui)."""
    return files("outlier_tui") / "themes"


def user_theme_dir() -> Path:
    """Folder for the user's own theme files."""
    return config_dir() / "themes"


def theme_from_dict(data: dict, default_name: str) -> Theme:
    """Build a Theme from parsed TOML, rejecting unknown keys and bad colours."""
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown theme keys: {', '.join(unknown)}")
    values = dict(data)
    values.setdefault("name", default_name)
    if "primary" not in values:
        raise ConfigError("a theme needs at least a 'primary' colour")
    for key in _COLOR_FIELDS:
        if key in values:
            _check_color(key, values[key])
    variables = values.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in variables.items()
    ):
        raise ConfigError("[variables] must map names to strings")
    values["variables"] = {k: str(v) for k, v in variables.items()}
    if not isinstance(values.get("dark", True), bool):
        raise ConfigError("'dark' must be true or false")
    return Theme(**values)


def _check_color(key: str, value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"'{key}' must be a colour string")
    try:
        Color.parse(value)
    except ColorParseError:
        raise ConfigError(f"'{key}' = {value!r} is not a colour") from None


def load_theme_file(path: Traversable) -> Theme:
    """One theme file; ConfigError (one line, names the file) if it is unusable."""
    try:
        return theme_from_dict(read_toml(path), default_name=path.name.removesuffix(".toml"))
    except ConfigError as exc:
        message = str(exc)
        if str(path) not in message:
            message = f"{path}: {message}"
        raise ConfigError(message) from None


def load_themes(dirs: Sequence[Traversable] | None = None) -> tuple[dict[str, Theme], list[str]]:
    """Every theme in `dirs` (default: bundled, then user) by name, plus one warning per bad file.

    Later folders override earlier ones, so a user theme can replace a bundled one.
    """
    if dirs is None:
        dirs = [bundled_theme_dir(), user_theme_dir()]
    themes: dict[str, Theme] = {}
    warnings: list[str] = []
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted((f for f in folder.iterdir() if f.name.endswith(".toml")), key=lambda f: f.name):
            try:
                theme = load_theme_file(path)
            except ConfigError as exc:
                warnings.append(str(exc))
                continue
            themes[theme.name] = theme
    return themes, warnings


def pick_theme(requested: str | None, available: set[str]) -> tuple[str, str | None]:
    """The theme to start with, and a warning if the requested one does not exist."""
    default = DEFAULT_DARK if DEFAULT_DARK in available else FALLBACK_THEME
    if requested is None:
        return default, None
    if requested in available:
        return requested, None
    names = ", ".join(sorted(available))
    return default, f"No theme named {requested!r}; available: {names}"
