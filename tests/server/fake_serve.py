"""`outlier serve --fake-engine` as a subprocess, for client tests that need no model."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from serve_helpers import API_KEY, Served, free_port, wait_until_up


def start_fake_serve(tmp: Path, *replies: str, parser: str = "json_tools", extra: tuple[str, ...] = ()) -> Served:
    """A fake-engine server answering `replies[0]`, and `replies[1]` after a tool result."""
    args = [sys.executable, "-m", "outlier_tui.cli", "serve", "--fake-engine", "--fake-tool-parser", parser]
    for i, reply in enumerate(replies):
        path = tmp / f"reply{i}.txt"
        path.write_text(reply)
        args += ["--fake-reply", str(path)]
    port = free_port()
    args += ["--port", str(port), *extra]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OUTLIER_API_KEY": API_KEY}
    log = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, process, log)
    return Served(url, process, "fake", tmp, API_KEY, log)


def anthropic_client(served: Served, **kwargs):
    import anthropic

    kwargs.setdefault("api_key", served.api_key)
    return anthropic.Anthropic(base_url=served.url, max_retries=0, **kwargs)
