"""Where Outlier keeps files of its own, per user: one rule for every kind.

OUTLIER_<KIND>_DIR overrides the platform's folder (tests and CI use that).
"""

from __future__ import annotations

import os
from pathlib import Path

_PLATFORM = {"cache": "user_cache_dir", "config": "user_config_dir", "data": "user_data_dir"}


def user_dir(kind: str) -> Path:
    """The 'cache', 'config' or 'data' folder of Outlier (not created here)."""
    override = os.environ.get(f"OUTLIER_{kind.upper()}_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(getattr(platformdirs, _PLATFORM[kind])("outlier"))
