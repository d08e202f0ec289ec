"""The streamed engine must compute exactly what mlx-lm computes fully resident.

Same checkpoint, same float32 compute dtype: logits are compared bit for bit
(tolerance 0), across every supported architecture and three cache budgets:
all experts fit, about half fit, and the smallest legal budget (one layer's
top-k), where long prompts run in expert chunks.
"""

import mlx.core as mx
import numpy as np
import pytest
from checkpoints import resident_oracle
from oracle import greedy_run

from engine.loader import load_streamed_model

ARCHS = ["mixtral", "qwen3_moe", "qwen3_next", "qwen3_5_moe", "deepseek_v3", "olmoe"]
BUDGETS = {"all": 1.0, "half": 0.5, "min": 0.0}


def _budget(path, fraction):
    probe = load_streamed_model(path, cache_bytes=None)
    info = probe.info
    probe.close()
    return max(int(info.total_expert_bytes * fraction), info.expert_bytes * info.top_k)


@pytest.mark.parametrize("budget", list(BUDGETS))
@pytest.mark.parametrize("arch,bits", [(a, 4) for a in ARCHS] + [("mixtral", None), ("qwen3_moe", 8)])
def test_streamed_matches_resident(checkpoint_factory, arch, bits, budget):
    path = checkpoint_factory(arch, bits=bits, shards=2 if arch == "mixtral" else 1)
    oracle_model, tokenizer = resident_oracle(path)
    want_tokens, want_logits = greedy_run(oracle_model, tokenizer)

    cache_bytes = _budget(path, BUDGETS[budget])
    loaded = load_streamed_model(path, cache_bytes=cache_bytes)
    try:
        got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer)
        assert got_tokens == want_tokens
        np.testing.assert_array_equal(np.array(got_logits), np.array(want_logits))

        cache = loaded.streamer.cache
        pool_bytes = loaded.streamer.pool.nbytes
        assert pool_bytes <= cache_bytes
        assert cache.peak_used * loaded.info.expert_bytes <= cache_bytes
        totals = loaded.telemetry.totals()
        assert totals["misses"] > 0
        if budget == "min":
            assert cache.num_slots == loaded.info.top_k
        if budget == "all":  # every expert read once, at load; layers then skip the host sync
            assert totals["misses"] == loaded.info.num_experts * len(loaded.info.moe_layers)
            assert loaded.streamer.all_resident
            loaded.streamer.flush_routing()
            assert loaded.telemetry.totals()["hits"] >= 31 * len(loaded.info.moe_layers)
    finally:
        loaded.close()


def test_dense_model_runs_fully_resident(checkpoint_factory):
    path = checkpoint_factory("llama")
    oracle_model, tokenizer = resident_oracle(path)
    want_tokens, want_logits = greedy_run(oracle_model, tokenizer, steps=10)
    loaded = load_streamed_model(path)
    assert loaded.streamer is None and loaded.info.moe_layers == ()
    got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=10)
    assert got_tokens == want_tokens
    np.testing.assert_array_equal(np.array(got_logits), np.array(want_logits))


def test_expert_tensors_are_never_read_whole(checkpoint_factory):
    """Loading reads no expert bytes; only routed experts are read, one slice each.
    (prefetch off: its load-time measurement and its guesses read experts too)"""
    path = checkpoint_factory("qwen3_moe")
    loaded = load_streamed_model(path, cache_bytes=None, prefetch=False)
    assert loaded.telemetry.totals()["bytes_read"] == 0
    greedy_run(loaded.model, loaded.tokenizer, steps=2, prompt="hi")
    totals = loaded.telemetry.totals()
    assert totals["bytes_read"] == totals["misses"] * _disk_bytes_per_expert(loaded)


def _disk_bytes_per_expert(loaded):
    files = loaded.streamer.layers[0]
    return sum(t.expert_nbytes for t in files.tensors.values())


@pytest.mark.parametrize("extra_slots", [1, 12])
def test_prefetch_keeps_output_and_counts_accuracy(checkpoint_factory, extra_slots):
    """Wrong guesses must not pin slots: with one spare slot a leak would soon
    leave no evictable slot."""
    path = checkpoint_factory("mixtral")
    oracle_model, tokenizer = resident_oracle(path)
    want_tokens, want_logits = greedy_run(oracle_model, tokenizer, steps=40)
    info = load_streamed_model(path).info
    budget = info.expert_bytes * (info.top_k + extra_slots)
    loaded = load_streamed_model(path, cache_bytes=budget, prefetch=True)
    got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=40)
    assert got_tokens == want_tokens
    np.testing.assert_array_equal(np.array(got_logits), np.array(want_logits))
    cache = loaded.streamer.cache
    assert cache.prefetch_issued > 0
    assert 0 <= cache.prefetch_used <= cache.prefetch_issued


def test_checkpoint_dtypes_path_matches_resident(checkpoint_factory):
    """GPUs keep the checkpoint's bf16 scales (slots stored as uint16 views);
    run that path here on the CPU against mlx-lm without any cast."""
    from mlx_lm.utils import load

    path = checkpoint_factory("qwen3_moe")
    oracle_model, tokenizer = load(str(path))
    want_tokens, want_logits = greedy_run(oracle_model, tokenizer, steps=8)
    info = load_streamed_model(path, compute_dtype=None).info
    loaded = load_streamed_model(path, cache_bytes=info.expert_bytes * info.top_k, compute_dtype=None)
    assert loaded.streamer.pool.arrays["gate_proj.scales"].dtype == mx.bfloat16
    got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=8)
    assert got_tokens == want_tokens
    np.testing.assert_array_equal(np.array(got_logits.astype(mx.float32)),
                                  np.array(want_logits.astype(mx.float32)))
