"""`outlier bench --io-bound --trace`: the engine on a checkpoint of the trace's shape, routed by
the trace. The routing the cache sees is the trace's; the figures follow their definitions;
the study skips with the reason where reads cannot be throttled."""

import os
import threading

import numpy as np
import pytest

from engine.generation import PromptCacheStore, generate
from engine.loader import LoadOptions, load_streamed_model
from outlier_tui.bench import iobound_trace, replay, throttle, trace_model, workload


@pytest.fixture(scope="module")
def tiny_trace(tmp_path_factory):
    rng = np.random.default_rng(4)
    tokens, layers, experts, k = 400, 2, 8, 2
    rows = np.stack([np.stack([rng.permutation(experts)[:k] for _ in range(layers)]) for _ in range(tokens)])
    path = tmp_path_factory.mktemp("trace") / "t.npz"
    np.savez(path, experts=rows.astype(np.int8), offsets=np.array([0, 150, 260, 400]))
    return path, replay.load_routing(path)


def test_the_engine_is_routed_by_the_trace(tiny_trace, tmp_path):
    path, routing = tiny_trace
    model_dir = trace_model.write_checkpoint(tmp_path / "m", routing, hidden=64, expert_hidden=64)
    info = load_streamed_model(model_dir, None, LoadOptions(prefetch=False)).info
    assert (len(info.moe_layers), info.num_experts, info.top_k) == (2, 8, 2)
    # a budget that evicts: the cache sees every call (the all-resident path records after the fact)
    loaded = load_streamed_model(model_dir, info.expert_bytes * 6, LoadOptions(prefetch=False, record_trace=True))
    try:
        start = trace_model.install(loaded.model, path)
        assert start == routing.middle()
        stats, _ = generate(
            loaded, PromptCacheStore(), workload.messages(), workload.params(5), threading.Event(), lambda *a: None
        )
        cache = loaded.streamer.sole_group().cache
        prompt = stats.prompt_tokens
        assert stats.generation_tokens == 5  # the end-of-turn row is zeroed: no early stop
        # decode calls: one per layer per token, the trace's rows after the prompt's
        decode = [
            sorted(e for _, e in cache.trace[a : a + n])
            for a, (n, bulk) in zip(np.cumsum([0] + [n for n, _ in cache.trace_calls]), cache.trace_calls)
            if not bulk
        ]
        want = [
            sorted(set(routing.experts[(start + prompt + t) % routing.tokens, layer].tolist()))
            for t in range(len(decode) // 2)
            for layer in range(2)
        ]
        assert decode == want and len(decode) >= 8
    finally:
        loaded.close()


def test_figures_follow_their_definitions():
    compute = {"decode_tokens_per_s": 4.0}  # 0.25 s/token
    entry = {
        "budget_percent": 25.0,
        "name": "default",
        "device_read_bytes": 1000,
        "passes": [{"decode_tokens": 10, "decode_tokens_per_s": 1.0, "decode_misses": 40, "bytes_read": 1000}],
        "replay_decode": {"accesses": 120, "lru_hits": 70, "optimal_hits": 100},
    }
    out = iobound_trace.derive(entry, compute, bandwidth=100.0, expert_bytes=20)
    assert out["live_misses_per_token"] == 4.0
    assert out["read_s_per_token"] == pytest.approx(4 * 20 / 100)  # 0.8 s: reads bound the token
    assert out["pipeline_efficiency"] == pytest.approx(1.0 / 0.8)
    assert out["misses_vs_lru"] == pytest.approx(4.0 / 5.0)
    assert out["misses_vs_belady"] == pytest.approx(4.0 / 2.0)
    off = dict(entry, name="off", passes=[dict(entry["passes"][0], decode_tokens_per_s=0.5)])
    rows = iobound_trace.headline([out, iobound_trace.derive(off, compute, 100.0, 20)])
    assert rows[0]["io_bound_speedup"] == pytest.approx(2.0)


def test_skips_with_the_reason_where_reads_cannot_be_throttled(tiny_trace, monkeypatch):
    path, _ = tiny_trace
    monkeypatch.setattr(iobound_trace.ReadThrottle, "create", classmethod(lambda cls, files, bps: (None, "not root")))
    result = iobound_trace.run(iobound_trace.Options(trace=path, tokens=2, hidden=64, expert_hidden=64))
    assert result["skipped"] == "reads cannot be throttled here: not root"
    assert "skipped" in iobound_trace.markdown(result)


def test_a_throttled_run_yields_the_four_figures(tiny_trace):
    path, routing = tiny_trace
    files_probe = path  # any file on the disk the checkpoints are written to
    device, why = throttle.disk_of([files_probe])
    if device is None or os.geteuid() != 0:
        pytest.skip(why or "needs root for a cgroup")
    result = iobound_trace.run(
        iobound_trace.Options(
            trace=path, tokens=4, budgets=[50.0], hidden=64, expert_hidden=64, disk_bytes_per_s=50_000_000
        )
    )
    if "skipped" in result:
        pytest.skip(result["skipped"])
    (row,) = result["budgets"]
    for key in ("pipeline_efficiency", "misses_vs_lru", "misses_vs_belady", "io_bound_speedup"):
        assert row[key] is not None and row[key] > 0
    off = next(c for c in result["configs"] if c["name"] == "off")
    assert off["misses_vs_lru"] == pytest.approx(1.0)  # LRU live is LRU replayed on its own calls
