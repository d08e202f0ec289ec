"""Starting and stopping `outlier serve` (and other OpenAI-compatible servers) as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

API_KEY = "test-key"
LONG_ANSWER = 20000  # max_tokens asked for; served_long's context (4096) caps it near 4000
CANCELLED_WITHIN = 1000  # steps: an answer that was not cancelled runs about 4000


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    model: str
    checkpoint: Path
    api_key: str | None
    log: object  # the server's stderr (a temporary file; a pipe could fill up and block it)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def client(self, **kwargs):
        import openai

        kwargs.setdefault("api_key", self.api_key or "none")
        return openai.OpenAI(base_url=self.base_url, max_retries=0, **kwargs)

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, log, path: str = "/health", timeout: float = 180.0) -> None:
    """Poll until the server answers (a guard against hanging, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited with {process.returncode}: {log.read()}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not come up")


def start_outlier_serve(
    checkpoint: Path, *extra: str, api_key: str | None = API_KEY, host: str = "127.0.0.1", preexec_fn=None
) -> Served:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "outlier_tui.cli",
        "serve",
        "--model",
        str(checkpoint),
        "--host",
        host,
        "--port",
        str(port),
        *extra,
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("OUTLIER_API_KEY", None)
    if api_key:
        env["OUTLIER_API_KEY"] = api_key  # not on the command line, where other users can read it
    log = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, text=True, env=env, preexec_fn=preexec_fn)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, process, log)
    return Served(url, process, checkpoint.name, checkpoint, api_key, log)


def stop(server: Served) -> str:
    """Stop a server with Ctrl-C as a user would; returns its stderr."""
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    return server.stderr()


def telemetry(served) -> dict:
    """The first snapshot of the telemetry stream."""
    with httpx.stream("GET", served.base_url + "/outlier/telemetry", headers=served.headers(), timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                return json.loads(line[6:])
    raise AssertionError("no telemetry event")


def wait_idle(served) -> dict:
    """Poll /health until no request is admitted and the engine is idle (a guard, not a timing check)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = httpx.get(served.url + "/health").json()
        if health["requests"] == 0 and health["engine"] == "idle":
            return health
        time.sleep(0.02)
    raise AssertionError(f"server still busy: {health}")
