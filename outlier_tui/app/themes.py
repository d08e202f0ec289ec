"""Colour themes as TOML data files, turned into textual.theme.Theme objects.

Bundled themes live in the repository's top-level `themes/` folder (or, in an
installed copy, `<prefix>/share/outlier/themes`); a user's own themes live in
`<config dir>/themes` and override bundled ones of the same name.
"""

from __future__ import annotations

import dataclasses
import site
import sys
import sysconfig
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

from outlier_tui.app.config import ConfigError, config_dir, read_toml

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


def bundled_theme_dirs() -> list[Path]:
    """Folders that may hold the themes shipped with Outlier, most specific first."""
    shared = Path("share") / "outlier" / "themes"  # where a wheel's data-files put them
    return [
        Path(__file__).resolve().parents[2] / "themes",  # source checkout / editable install
        Path(sysconfig.get_path("data")) / shared,  # pip install (venv or system)
        Path(sys.prefix) / shared,
        Path(site.USER_BASE or "~/.local").expanduser() / shared,  # pip install --user
    ]


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


def load_theme_file(path: Path) -> Theme:
    """One theme file; ConfigError (one line, names the file) if it is unusable."""
    try:
        return theme_from_dict(read_toml(path), default_name=path.stem)
    except ConfigError as exc:
        message = str(exc)
        if str(path) not in message:
            message = f"{path}: {message}"
        raise ConfigError(message) from None


def load_themes(dirs: list[Path] | None = None) -> tuple[dict[str, Theme], list[str]]:
    """Every theme in `dirs` (bundled, then user) by name, plus one warning per bad file.

    Later folders override earlier ones, so a user theme can replace a bundled one.
    Only the first bundled folder that exists is used, so an installed copy and
    a checkout never mix.
    """
    if dirs is None:
        # The first folder that really holds Outlier's themes (site-packages/themes
        # next to an installed copy could belong to some other package).
        bundled = next((d for d in bundled_theme_dirs() if (d / f"{DEFAULT_DARK}.toml").is_file()), None)
        dirs = ([bundled] if bundled else []) + [user_theme_dir()]
    themes: dict[str, Theme] = {}
    warnings: list[str] = []
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
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
