"""Which model folder a UI opens: the one the user named, or the embedded demo model.

Both UIs call resolve_model_dir so that `--model` means the same everywhere
and a missing folder fails with the same one-line message.
"""

from __future__ import annotations

from pathlib import Path

from engine.api import ProgressFn
from engine.errors import CheckpointError

# What the first run's demo build costs (measured: ~100 s to ready on a 2-core Linux box;
# the converted dense model, the MoE and the downloaded wheel in the user cache).
DEMO_BUILD_NOTE = "first run only, ~2 min, ~3.4 GB in the cache"
DEMO_BUILD_LABEL = f"building the demo model ({DEMO_BUILD_NOTE})"  # the command line's progress bar


def resolve_model_dir(model: str | None, on_progress: ProgressFn | None = None) -> Path:
    """The model folder to load; builds the demo model (once, with progress) when model is None.

    on_progress(LoadProgress) reports the demo build. A named folder
    is only checked for existence here; the engine validates its contents.
    """
    if model:
        path = Path(model).expanduser()
        if not path.exists():
            raise CheckpointError(
                f"Model folder {path} does not exist: pass --model with an mlx-community model folder."
            )
        if not path.is_dir():
            raise CheckpointError(f"{path} is not a folder: pass --model with an mlx-community model folder.")
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path} has no config.json: pass --model with an mlx-community model folder.")
        return path.resolve()
    try:
        from engine.demo import ensure_demo_model
    except ImportError:
        raise CheckpointError(
            "The built-in demo model is not available in this install: pass --model with an mlx-community model folder."
        ) from None
    return Path(ensure_demo_model(on_progress=on_progress))
