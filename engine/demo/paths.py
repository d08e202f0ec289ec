"""Where the demo model and its source live on disk."""

from __future__ import annotations

from pathlib import Path

from engine.user_dirs import user_dir

DENSE_NAME = "smollm2-135m-dense"


def cache_root() -> Path:
    """Outlier's cache folder: $OUTLIER_CACHE_DIR if set, else the user cache dir."""
    return user_dir("cache")


def downloads_dir() -> Path:
    return cache_root() / "downloads"


def demo_dir() -> Path:
    return cache_root() / "demo"


def moe_name(experts: int, top_k: int) -> str:
    return f"smollm2-135m-moe-e{experts}-k{top_k}"


def moe_model_dir(experts: int = 64, top_k: int = 2) -> Path:
    return demo_dir() / moe_name(experts, top_k)


def dense_model_dir() -> Path:
    return demo_dir() / DENSE_NAME
