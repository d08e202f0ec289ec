"""The served figure: decode tok/s through `outlier serve` (one streamed client) / in-process.

Both sides run the bench workload (same prompt, greedy, same token budget)
on the same model with the same expert-cache budget: the in-process engine
lives in this process, the server in a subprocess started as a user would
start it. One warm-up answer each, then rounds alternate in-process and
served answers (alternating which goes first); the report gives medians and the median of per-round ratios
(target >= 0.95).

Decode tok/s is measured the same way on both sides: tokens after the first
over the time from the first token to the last, so prefill does not count.
On a shared, oversubscribed machine wall-clock tok/s mostly measures the
scheduler, so the report also gives CPU seconds per answer of the process
that runs the engine (this one in-process, the server's when served): their
ratio is what serving costs in work, whatever the load.
Run: `outlier bench --served [--model DIR] [--tokens N] [--rounds N]` or
`python -m outlier_tui.bench.served`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from engine.api import GenerationDone, GenerationFailed
from outlier_tui.bench import workload
from outlier_tui.bench.orchestrate import Options

MB = 1024 * 1024


def in_process_tps(engine, tokens: int) -> tuple[float, int]:
    """(decode tok/s, tokens) of one answer from an engine in this process."""
    for event in engine.generate(workload.messages(), workload.params(tokens)):
        if isinstance(event, GenerationFailed):
            raise RuntimeError(event.message)
        if isinstance(event, GenerationDone):
            return event.stats.generation_tps, event.stats.generation_tokens
    raise RuntimeError("the engine ended without an answer")


def served_tps(client: httpx.Client, tokens: int) -> tuple[float, int]:
    """(decode tok/s, tokens) of one streamed answer as its client sees it."""
    params = workload.params(tokens)
    body = {
        "messages": workload.messages(),
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "seed": params.seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    first = last = None
    generated = 0
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"the server answered {response.status_code}: {response.text[:200]}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                generated = chunk["usage"]["completion_tokens"]
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()):
                last = time.perf_counter()
                first = first or last
    decode = (last - first) if first is not None and last is not None else 0.0
    return ((generated - 1) / decode if generated > 1 and decode > 0 else 0.0), generated


def measure(
    model_dir: Path,
    tokens: int = Options.tokens,
    rounds: int = Options.rounds,
    cache_bytes: int | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """Both figures, side by side, and their ratio (medians over rounds)."""
    from engine import Engine

    engine = Engine()
    server = None
    try:
        progress("loading the in-process engine")
        info = engine.load(str(model_dir), cache_bytes).result()
        budget = info.cache_budget_bytes  # the server gets exactly this budget
        port = _free_port()
        progress(f"starting outlier serve on port {port} (budget {budget / MB:.1f} MB)")
        log = tempfile.TemporaryFile("w+")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "outlier_tui.cli",
                "serve",
                "--model",
                str(model_dir),
                "--port",
                str(port),
                "--cache-mb",
                repr(budget / MB),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={k: v for k, v in os.environ.items() if k != "OUTLIER_API_KEY"},
        )
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=httpx.Timeout(3600, connect=10))
        _wait_up(client, server, log)
        progress("warm-up: one answer each")
        in_process_tps(engine, tokens)
        served_tps(client, tokens)
        rows = []
        here, there = psutil.Process(), psutil.Process(server.pid)
        for r in range(rounds):
            progress(f"round {r + 1}/{rounds}")
            sides = [
                ("local", here, lambda: in_process_tps(engine, tokens)),
                ("served", there, lambda: served_tps(client, tokens)),
            ]
            if r % 2:  # alternate which side goes first, so drift in machine load cancels out
                sides.reverse()
            got = {name: _with_cpu(process, answer) for name, process, answer in sides}
            rows.append(round_row(got["local"], got["served"]))
        return {"model": str(model_dir), "tokens": tokens, "cache_budget_bytes": budget, **summarize(rows)}
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        engine.close()


def round_row(local: tuple[float, int, float], served: tuple[float, int, float]) -> dict:
    """One round from each side's (decode tok/s, tokens, CPU seconds): served / in-process
    for speed, in-process / served for CPU (both 1.0 when serving costs nothing)."""
    (local_tps, local_tokens, local_cpu), (served_tps, served_tokens, served_cpu) = local, served
    return {
        "in_process_tps": local_tps,
        "served_tps": served_tps,
        "tokens": local_tokens,
        "served_tokens": served_tokens,
        "ratio": served_tps / local_tps if local_tps else 0.0,
        "in_process_cpu_s": local_cpu,
        "served_cpu_s": served_cpu,
        "cpu_ratio": local_cpu / served_cpu if served_cpu else 0.0,
    }


def summarize(rows: list[dict]) -> dict:
    """The rounds and their medians. The ratios are medians of each round's ratio (both sides
    ran back to back there, under the same machine load), not ratios of the medians."""
    return {
        "rounds": rows,
        "in_process_tps": statistics.median(r["in_process_tps"] for r in rows),
        "served_tps": statistics.median(r["served_tps"] for r in rows),
        "served_ratio": statistics.median(r["ratio"] for r in rows),
        "in_process_cpu_s": statistics.median(r["in_process_cpu_s"] for r in rows),
        "served_cpu_s": statistics.median(r["served_cpu_s"] for r in rows),
        "served_cpu_ratio": statistics.median(r["cpu_ratio"] for r in rows),
    }


def markdown(result: dict) -> str:
    lines = [
        f"Served vs in-process decode ({result['tokens']} tokens, budget "
        f"{result['cache_budget_bytes'] / MB:.1f} MB, {len(result['rounds'])} rounds, medians)",
        "",
        "| | decode tok/s |",
        "|---|---:|",
        f"| in-process engine | {result['in_process_tps']:.2f} |",
        f"| through `outlier serve` (one streamed client) | {result['served_tps']:.2f} |",
        f"| **ratio served / in-process** (target >= 0.95) | **{result['served_ratio']:.3f}** |",
        "",
        "| | CPU s per answer (engine's process) |",
        "|---|---:|",
        f"| in-process | {result['in_process_cpu_s']:.2f} |",
        f"| `outlier serve` | {result['served_cpu_s']:.2f} |",
        f"| ratio in-process / served (1.0: serving costs no work) | {result['served_cpu_ratio']:.3f} |",
        "",
    ]
    return "\n".join(lines)


def _with_cpu(process: psutil.Process, answer: Callable[[], tuple[float, int]]) -> tuple[float, int, float]:
    """answer()'s (tok/s, tokens) and the CPU seconds `process` spent meanwhile."""
    before = process.cpu_times()
    tps, generated = answer()
    after = process.cpu_times()
    return tps, generated, (after.user - before.user) + (after.system - before.system)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(client: httpx.Client, server: subprocess.Popen, log, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            lines = log.read().strip().splitlines()
            raise RuntimeError(f"outlier serve exited: {lines[-1] if lines else server.returncode}")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("outlier serve did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m outlier_tui.bench.served", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", help="mlx-community MoE folder (default: the demo MoE)")
    parser.add_argument("--tokens", type=int, default=Options.tokens, metavar="N")
    parser.add_argument("--rounds", type=int, default=Options.rounds, metavar="N")
    parser.add_argument(
        "--cache-mb",
        type=float,
        default=None,
        metavar="MB",
        help="expert-cache budget for both sides (default: the engine's choice)",
    )
    parser.add_argument("--json", metavar="PATH")


def run(args: argparse.Namespace) -> int:
    from engine.errors import OutlierError
    from outlier_tui.model_choice import resolve_model_dir

    if (args.tokens or 0) < 2 or (args.rounds or 0) < 1:
        print("outlier: --tokens must be at least 2 and --rounds at least 1", file=sys.stderr)
        return 1
    try:
        model_dir = resolve_model_dir(args.model)
        result = measure(
            Path(model_dir),
            args.tokens,
            args.rounds,
            None if args.cache_mb is None else int(args.cache_mb * MB),
            progress=lambda m: print(f"bench: {m}", file=sys.stderr, flush=True),
        )
    except (OutlierError, RuntimeError, OSError, httpx.HTTPError) as exc:
        print(f"outlier: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
