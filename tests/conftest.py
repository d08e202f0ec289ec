import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def checkpoint_factory(tmp_path_factory):
    """Build each tiny checkpoint once per session: factory(arch, bits=4, shards=1)."""
    from checkpoints import write_checkpoint

    built = {}

    def make(arch: str, bits: int | None = 4, shards: int = 1, group_size: int = 32) -> Path:
        key = (arch, bits, shards, group_size)
        if key not in built:
            path = tmp_path_factory.mktemp(f"{arch}-{bits}-{shards}")
            built[key] = write_checkpoint(path, arch, bits=bits, shards=shards, group_size=group_size)
        return built[key]

    return make


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path, monkeypatch):
    """Keep tests away from the real data/config dirs (the cache dir is shared on purpose)."""
    monkeypatch.setenv("OUTLIER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OUTLIER_CONFIG_DIR", str(tmp_path / "config"))
    os.environ.setdefault("OUTLIER_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".outlier-test-cache"))
