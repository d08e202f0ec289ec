"""`outlier serve` on a tiny checkpoint, started once per session as a user would (a subprocess)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # serve_helpers, shared by the test modules

from serve_helpers import start_outlier_serve, stop  # noqa: E402


@pytest.fixture(scope="session")
def served(checkpoint_factory):
    """One server for the session: qwen3_moe (context 512), API key, 2 waiting requests at most,
    1 MiB bodies."""
    server = start_outlier_serve(checkpoint_factory("qwen3_moe"), "--max-queue", "2", "--max-body-mb", "1")
    yield server
    err = stop(server)
    assert "Traceback" not in err, err
