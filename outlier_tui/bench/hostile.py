"""The hostile-client probe of `outlier serve` (issue 23), rerunnable: what one attacker or buggy
client does to the server, and what the server does back.

Starts `outlier serve` on loopback (key from $OUTLIER_API_KEY, defaults otherwise) and runs the
probes of the original finding, printing a table: /health latency while maximal stop sequences
stream and under 2,100 idle connections, open files and log lines, peak RSS growth of refused
huge prompts, the statuses of cross-site and malformed requests, and leaks over 300 sequential
requests. Linux only (reads /proc). Run: `python -m outlier_tui.bench.hostile --model DIR`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

KEY = "probe-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class Server:
    def __init__(self, model: str, *extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile("w+")
        env = {**os.environ, "OUTLIER_API_KEY": KEY + " ", "PYTHONWARNINGS": "ignore"}
        command = [sys.executable, "-m", "outlier_tui.cli", "serve", "--model", model, "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, *extra], stdout=subprocess.DEVNULL, stderr=self.log, text=True, env=env
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.stderr()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not come up")

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def log_lines(self) -> int:
        return len(self.stderr().splitlines())

    def open_file_limit(self) -> list[str]:
        limits = Path(f"/proc/{self.process.pid}/limits").read_text()
        return limits.split("Max open files", 1)[1].split()[:2]

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def threads(self) -> int:
        return _status_kib(self.process.pid, "Threads")

    def rss_mib(self) -> float:
        return _status_kib(self.process.pid, "VmRSS") / 1024

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak_mib(self) -> float:
        return _status_kib(self.process.pid, "VmHWM") / 1024

    def post(self, path: str, body: dict | bytes, headers: dict | None = None, timeout: float = 60) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", **(headers or {})}
        return httpx.post(self.url + "/v1" + path, content=content, headers=sent, timeout=timeout)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def probe_stops(server: Server, rows: list) -> None:
    old = {"messages": [{"role": "user", "content": "x"}], "stop": ["ab" * 120_000] * 16}
    response, seconds = _timed(lambda: server.post("/chat/completions", old, timeout=120))
    rows.append(("stops: 16 x 240k chars (the original probe)", f"{response.status_code} in {seconds:.2f} s"))
    body = {
        "messages": [{"role": "user", "content": "go on"}],
        "max_tokens": 100_000,
        "temperature": 0,
        "stream": True,
        "stop": [c * 512 for c in "abc"] + ["xy" * 256],
    }
    latencies, chunks = [], 0
    with httpx.Client(timeout=60) as client:
        request = client.build_request(
            "POST", server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
        )
        response = client.send(request, stream=True)
        lines = response.iter_lines()
        for _ in range(30):
            for line in lines:
                if line.startswith("data: {"):
                    chunks += 1
                    break
            _, seconds = _timed(lambda: httpx.get(server.url + "/health", timeout=10))
            latencies.append(seconds)
        response.close()
    rows.append(
        (
            "stops: 4 x 512 chars streaming, /health latency",
            f"median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms "
            f"({chunks} chunks streamed meanwhile)",
        )
    )


def probe_connections(server: Server, rows: list, count: int, beyond: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lines, fds = server.log_lines(), server.fds()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(count)]
    health, seconds = _timed(lambda: httpx.get(server.url + "/health", timeout=30))
    rows.append(
        (
            f"{count} idle connections: /health",
            f"{health.status_code} in {seconds * 1000:.0f} ms; server fds {fds} -> {server.fds()}",
        )
    )
    more = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(beyond)]
    time.sleep(1)
    closed = sum(_closed_now(sock) for sock in idle + more)
    try:
        status = str(httpx.get(server.url + "/health", timeout=30).status_code)
    except httpx.HTTPError as exc:
        status = f"refused ({type(exc).__name__})"
    rows.append(
        (
            f"+{beyond} more ({count + beyond} in all): server fds, closed at once, /health",
            f"{server.fds()} fds; {closed} closed by the server; /health {status}",
        )
    )
    for sock in idle + more:
        sock.close()
    start = time.monotonic()
    while httpx.get(server.url + "/health", timeout=30).status_code != 200:
        time.sleep(0.05)
    rows.append(("all closed: /health 200 again after", f"{time.monotonic() - start:.2f} s"))
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    slow.settimeout(120)
    start = time.monotonic()
    while slow.recv(4096):
        pass
    rows.append(("slow headers: connection dropped after", f"{time.monotonic() - start:.1f} s"))
    slow.close()
    rows.append(("server log lines written by all of the above", str(server.log_lines() - lines)))
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _closed_now(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def probe_memory(server: Server, rows: list) -> None:
    for name, path, body in (
        ("3.9 MB chat message", "/chat/completions", {"messages": [{"role": "user", "content": "a" * 3_900_000}]}),
        ('completions "x " * 1.9M', "/completions", {"prompt": "x " * 1_900_000}),
        ("3.9 MB of empty arrays", "/chat/completions", b'{"messages": [' + b"[]," * 1_300_000 + b"[]]}"),
    ):
        server.reset_peak()
        before = server.rss_mib()
        response, seconds = _timed(lambda path=path, body=body: server.post(path, body))
        rows.append(
            (
                f"memory: {name}",
                f"{response.status_code} in {seconds * 1000:.0f} ms; peak RSS {server.peak_mib() - before:+.1f} MiB "
                f"(baseline {before:.0f} MiB), after {server.rss_mib() - before:+.1f} MiB",
            )
        )


def probe_statuses(server: Server, rows: list) -> None:
    ask = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    raw = json.dumps(ask).encode()
    checks = [
        ("POST text/plain", lambda: server.post("/chat/completions", raw, {"Content-Type": "text/plain"})),
        (
            "POST form body",
            lambda: server.post("/chat/completions", raw, {"Content-Type": "application/x-www-form-urlencoded"}),
        ),
        ("Host: evil.example", lambda: httpx.get(server.url + "/health", headers={"Host": "evil.example"})),
        (
            "CORS preflight (no --cors-origin)",
            lambda: httpx.options(
                server.url + "/v1/chat/completions",
                headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
            ),
        ),
        (
            "lone surrogate in content",
            lambda: server.post("/chat/completions", b'{"messages": [{"role": "user", "content": "a\\ud800"}]}'),
        ),
        ("100k-deep nesting", lambda: server.post("/chat/completions", b"[" * 100_000)),
        ("logit_bias", lambda: server.post("/chat/completions", {**ask, "logit_bias": {"1": 5}})),
        (
            "response_format",
            lambda: server.post("/chat/completions", {**ask, "response_format": {"type": "json_object"}}),
        ),
        ("tools", lambda: server.post("/chat/completions", {**ask, "tools": [{"type": "function"}]})),
        ("5 stop sequences", lambda: server.post("/chat/completions", {**ask, "stop": ["a"] * 5})),
        ("key set with a trailing space, sent without", lambda: server.post("/chat/completions", ask)),
    ]
    for name, call in checks:
        response = call()
        rows.append((f"status: {name}", str(response.status_code)))
    with httpx.stream("GET", server.url + "/v1/outlier/telemetry", headers={"Authorization": f"Bearer {KEY}"}) as r:
        line = next(line for line in r.iter_lines() if line.startswith("data: "))
    rows.append(("telemetry model.path", repr(json.loads(line[6:])["model"]["path"])))


def probe_soak(server: Server, rows: list, requests: int) -> None:
    before = (server.rss_mib(), server.fds(), server.threads())
    for i in range(requests):
        server.post("/chat/completions", {"messages": [{"role": "user", "content": f"n{i}"}], "max_tokens": 2})
    after = (server.rss_mib(), server.fds(), server.threads())
    rows.append(
        (
            f"{requests} sequential requests: RSS, fds, threads",
            f"{before[0]:.0f} -> {after[0]:.0f} MiB, {before[1]} -> {after[1]}, {before[2]} -> {after[2]}",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder (a tiny one is enough)")
    parser.add_argument("--idle", type=int, default=2100, help="idle connections to open (default 2100)")
    parser.add_argument("--soak", type=int, default=300, help="sequential requests for the leak check")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str]] = []
    server = Server(args.model)
    try:
        rows.append(
            (
                "open-file limit of the server (soft, hard)",
                Path(f"/proc/{server.process.pid}/limits")
                .read_text()
                .split("Max open files", 1)[1]
                .split()[0:2]
                .__str__(),
            )
        )
        probe_stops(server, rows)
        probe_memory(server, rows)
        probe_statuses(server, rows)
        probe_soak(server, rows, args.soak)
        probe_connections(server, rows, args.idle, 3500)
    finally:
        server.stop()
    tracebacks = server.stderr().count("Traceback")
    rows.append(("tracebacks in the server's log", str(tracebacks)))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(rows), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
