"""The user's keymap: binding id -> keys, read from <config dir>/keymap.toml.

Every binding of the app has an id (bindings.py: binding_ids()), so users can
remap any action without code. Two layouts are accepted:

    send = "enter"                 # top-level keys
    [keymap]                       # or a [keymap] table
    copy_code = "f6,ctrl+f"
"""

from __future__ import annotations

from pathlib import Path

from outlier_tui.app.config import ConfigError, config_dir, read_toml

KEYMAP_FILE = "keymap.toml"


def keymap_path() -> Path:
    """Where the user's keymap file lives."""
    return config_dir() / KEYMAP_FILE


def load_keymap(path: Path | None = None, known_ids: set[str] | None = None) -> tuple[dict[str, str], list[str]]:
    """The keymap in `path` (missing file: empty), and warnings for entries skipped."""
    path = keymap_path() if path is None else path
    if not path.exists():
        return {}, []
    try:
        data = read_toml(path)
    except ConfigError as exc:
        return {}, [str(exc)]
    table = data.get("keymap", data)
    if not isinstance(table, dict):
        return {}, [f'{path}: [keymap] must be a table of binding id = "keys"']
    keymap: dict[str, str] = {}
    warnings: list[str] = []
    for binding_id, keys in table.items():
        if isinstance(keys, list) and all(isinstance(k, str) for k in keys):
            keys = ",".join(keys)
        if not isinstance(keys, str) or not keys.strip():
            warnings.append(f'{path}: {binding_id} must be a key string like "ctrl+n"')
            continue
        if known_ids is not None and binding_id not in known_ids:
            warnings.append(f"{path}: unknown binding id {binding_id!r}")
            continue
        keymap[binding_id] = keys.replace(" ", "")
    return keymap, warnings
