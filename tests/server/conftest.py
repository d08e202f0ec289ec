"""`outlier serve` on a tiny checkpoint, started once per session as a user would (a subprocess)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from serve_helpers import free_port, start_outlier_serve, stop, wait_until_up  # noqa: E402


@pytest.fixture(scope="session")
def served(checkpoint_factory):
    """One server for the session: qwen3_moe (context 512), API key, 2 waiting requests at most,
    1 MiB bodies."""
    server = start_outlier_serve(checkpoint_factory("qwen3_moe"), "--max-queue", "2", "--max-body-mb", "1")
    yield server
    err = stop(server)
    assert "Traceback" not in err, err


@pytest.fixture(scope="session")
def served_long(checkpoint_factory, tmp_path_factory):
    """A server whose answers run until cancelled or capped: the tiny mixtral without an
    end-of-sequence token, and a 4096-token context (its tokenizer's), so an uncancelled
    answer runs about 4000 tokens; 2 waiting requests at most."""
    checkpoint = tmp_path_factory.mktemp("mixtral-no-eos") / "mixtral-no-eos"
    shutil.copytree(checkpoint_factory("mixtral"), checkpoint)
    for name, key in (("config.json", "eos_token_id"), ("tokenizer_config.json", "eos_token")):
        settings = json.loads((checkpoint / name).read_text())
        settings[key] = None  # no end-of-sequence token: nothing ends an answer early
        (checkpoint / name).write_text(json.dumps(settings))
    server = start_outlier_serve(checkpoint, "--max-queue", "2")
    yield server
    err = stop(server)
    assert "Traceback" not in err, err


@pytest.fixture(scope="session")
def mlx_lm_server(checkpoint_factory, tmp_path_factory):
    """mlx-lm's own server on the same tiny checkpoint (an empty Hugging Face cache: its
    /v1/models scans that cache)."""
    checkpoint = checkpoint_factory("qwen3_moe")
    port = free_port()
    hf_cache = tmp_path_factory.mktemp("hf-cache")
    log = open(tmp_path_factory.mktemp("mlx-lm-log") / "server.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlx_lm.server", "--model", str(checkpoint), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "HF_HUB_CACHE": str(hf_cache), "PYTHONWARNINGS": "ignore"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
