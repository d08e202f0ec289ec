"""The remote backend: the UIs' engine is a client of an OpenAI-compatible server.

Against `outlier serve` it shows the remote engine's telemetry; against a real
mlx_lm.server it chats and says there is no expert telemetry; unreachable
servers, wrong keys and servers dying mid-answer end in one-line messages
that keep what arrived.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest
from serve_helpers import API_KEY, CANCELLED_WITHIN, LONG_ANSWER, free_port, start_outlier_serve, telemetry, wait_idle

from engine.api import GenerationDone, GenerationFailed, GenerationParams, TextDelta
from engine.remote import NO_TELEMETRY, RemoteEngine, RemoteError, _count, _seconds, api_base
from engine.wire import snapshot_from_json
from outlier_tui.plain.pipe import ask_once

GREEDY = GenerationParams(max_tokens=12, temperature=0.0)


def events(stream) -> list:
    return list(stream)


def text_of(evs) -> str:
    return "".join(e.text for e in evs if isinstance(e, TextDelta))


def test_api_base_accepts_the_usual_spellings():
    assert api_base("http://h:1") == api_base("http://h:1/v1/") == api_base("h:1") == "http://h:1/v1"


def test_remote_engine_against_outlier_serve_has_remote_telemetry(served):
    engine = RemoteEngine(served.url, api_key=API_KEY)
    try:
        info = engine.load("").result(timeout=60)
        assert info.path == served.model and info.num_experts == 8 and info.moe_layers == (0, 1, 2)
        expected = (
            served.client()
            .chat.completions.create(
                model=served.model, messages=[{"role": "user", "content": "remote"}], max_tokens=12, temperature=0
            )
            .choices[0]
            .message.content
        )
        before = engine.snapshot().step
        evs = events(engine.generate([{"role": "user", "content": "remote"}], GREEDY))
        assert text_of(evs) == expected
        done = evs[-1]
        assert isinstance(done, GenerationDone) and not done.cancelled
        assert done.stats.generation_tokens == 12
        # the server's engine counted them over this answer (the `outlier` object beside `usage`)
        assert done.stats.expert_hits is not None and done.stats.expert_misses is not None
        assert done.stats.expert_hits + done.stats.expert_misses > 0
        deadline = time.monotonic() + 30
        while engine.snapshot().step <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        snap = engine.snapshot()
        assert snap.step > before and snap.hits.shape == (3, 8) and snap.telemetry_note is None
    finally:
        engine.close()


def test_answer_figures_are_each_answers_own_when_the_server_serves_two_clients(served):
    """Two clients ask at once (the second waits its turn): each answer's expert figures are
    its own, so together they add up to the server's whole change, not to twice that."""
    engines = [RemoteEngine(served.url, api_key=API_KEY) for _ in range(2)]
    try:
        for engine in engines:
            engine.load("").result(timeout=60)
        wait_idle(served)
        before = snapshot_from_json(telemetry(served))
        streams = [
            engine.generate([{"role": "user", "content": f"client {i} asks"}], GREEDY)
            for i, engine in enumerate(engines)
        ]
        done = [events(stream)[-1] for stream in streams]
        wait_idle(served)
        after = snapshot_from_json(telemetry(served))
    finally:
        for engine in engines:
            engine.close()
    assert all(isinstance(d, GenerationDone) and not d.cancelled for d in done), done
    stats = [d.stats for d in done]
    assert all(s.expert_hits is not None and s.expert_misses is not None and s.bytes_read is not None for s in stats)
    assert all(s.expert_hits + s.expert_misses > 0 for s in stats)
    assert sum(s.expert_hits for s in stats) == int(after.hits.sum() - before.hits.sum())
    assert sum(s.expert_misses for s in stats) == int(after.misses.sum() - before.misses.sum())
    assert sum(s.bytes_read for s in stats) <= after.bytes_read - before.bytes_read


def test_answer_figures_a_server_sends_are_numbers_or_unknown():
    sent = {"expert_hits": 5, "expert_misses": -1, "bytes_read": 2.5, "peak_rss_bytes": True, "io_wait_seconds": 0.25}
    assert _count(sent, "expert_hits") == 5
    assert _count(sent, "expert_misses") is None  # negative
    assert _count(sent, "bytes_read") is None  # not a whole number
    assert _count(sent, "peak_rss_bytes") is None  # a bool is not a count
    assert _count(sent, "cache_peak_bytes") is None  # not sent
    assert _count("not an object", "expert_hits") is None
    assert _seconds(sent, "io_wait_seconds") == 0.25
    assert _seconds({"io_wait_seconds": float("nan")}, "io_wait_seconds") is None
    assert _seconds({"io_wait_seconds": "1"}, "io_wait_seconds") is None


def test_cancel_stops_the_remote_generation(served_long):
    engine = RemoteEngine(served_long.url, api_key=API_KEY)
    try:
        engine.load("").result(timeout=60)
        wait_idle(served_long)
        step_before = telemetry(served_long)["step"]
        stream = engine.generate(
            [{"role": "user", "content": "long"}], GenerationParams(max_tokens=LONG_ANSWER, temperature=0.0)
        )
        got = []
        for event in stream:
            got.append(event)
            if len(got) == 1:
                engine.cancel()  # closes the HTTP response: the server sees its client leave
        assert isinstance(got[-1], GenerationDone) and got[-1].cancelled
        wait_idle(served_long)
        steps = telemetry(served_long)["step"] - step_before
        assert steps < CANCELLED_WITHIN, f"the server kept generating after the cancel ({steps} steps)"
    finally:
        engine.close()


def test_wrong_key_and_unreachable_server_are_one_line_errors(served):
    engine = RemoteEngine(served.url, api_key="wrong")
    with pytest.raises(RemoteError, match="API key"):
        engine.load("").result(timeout=60)
    engine.close()
    nowhere = RemoteEngine(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RemoteError, match="Cannot reach") as caught:
        nowhere.load("").result(timeout=60)
    assert "\n" not in str(caught.value)
    evs = events(nowhere.generate([{"role": "user", "content": "x"}], GREEDY))
    assert isinstance(evs[-1], GenerationFailed) and "Cannot reach" in evs[-1].message
    nowhere.close()


def test_server_gone_mid_answer_keeps_what_arrived(checkpoint_factory):
    server = start_outlier_serve(checkpoint_factory("mixtral"))
    engine = RemoteEngine(server.url, api_key=API_KEY)

    class KillOnFirstText(io.StringIO):
        def write(self, text: str) -> int:
            if server.process.poll() is None:
                server.process.kill()  # the server dies mid-answer
            return super().write(text)

    try:
        engine.load("").result(timeout=60)
        out = KillOnFirstText()
        # The plain REPL's turn: the text that arrived is kept, the failure is one line.
        result = ask_once(engine, "go", out, params=GenerationParams(max_tokens=LONG_ANSWER, temperature=0.0))
        assert result.status == "error"
        assert "went away mid-answer" in result.error and "kept" in result.error and "\n" not in result.error
        assert result.text and out.getvalue().startswith(result.text)
        again = ask_once(engine, "again", io.StringIO())
        assert again.status == "error" and "Cannot reach" in again.error
    finally:
        engine.close()
        server.process.kill()
        server.process.wait()


def test_pipe_mode_against_mlx_lm_server(mlx_lm_server, tmp_path):
    import openai

    expected = (
        openai.OpenAI(base_url=mlx_lm_server + "/v1", api_key="none", max_retries=0)
        .chat.completions.create(
            model="default_model", messages=[{"role": "user", "content": "Hello"}], max_tokens=12, temperature=0
        )
        .choices[0]
        .message.content
    )
    result = subprocess.run(
        [sys.executable, "-m", "outlier_tui.cli", "chat", "--plain", "--server", mlx_lm_server, "--max-tokens", "12"],
        input="Hello",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == expected
    assert "12 tok" in result.stderr and "Traceback" not in result.stderr
    assert "RSS" not in result.stderr and "experts" not in result.stderr  # unknown remotely: not zeros


def test_remote_engine_against_mlx_lm_server_says_no_telemetry(mlx_lm_server):
    engine = RemoteEngine(mlx_lm_server)
    try:
        info = engine.load("").result(timeout=60)
        assert info.num_experts == 0 and info.model_type == "remote"
        evs = events(engine.generate([{"role": "user", "content": "Hello"}], GREEDY))
        assert isinstance(evs[-1], GenerationDone) and evs[-1].stats.generation_tokens == 12
        stats = evs[-1].stats  # mlx_lm.server reports no expert or memory figures: unknown, not 0
        assert stats.expert_hits is None and stats.expert_misses is None and stats.bytes_read is None
        assert stats.peak_rss_bytes is None and stats.cache_peak_bytes is None and stats.io_wait_seconds is None
        snap = engine.snapshot()
        assert snap.telemetry_note == NO_TELEMETRY and snap.hits.size == 0
    finally:
        engine.close()
