"""The streamed engine must compute exactly what mlx-lm computes fully resident.

Same checkpoint, same float32 compute dtype: logits are compared bit for bit
(tolerance 0). Every architecture and expert format at three budgets is in
test_architectures.py; here: dense models, byte accounting, prefetch, GPU dtypes.
"""

import mlx.core as mx
import numpy as np
import pytest
from checkpoints import resident_oracle
from oracle import greedy_run

from engine.loader import LoadOptions, load_streamed_model


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
    loaded = load_streamed_model(path, None, LoadOptions(prefetch=False))
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
    loaded = load_streamed_model(path, budget, LoadOptions(prefetch=True))
    got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=40)
    assert got_tokens == want_tokens
    np.testing.assert_array_equal(np.array(got_logits), np.array(want_logits))
    cache = loaded.streamer.sole_group().cache
    assert cache.prefetch_issued > 0
    assert 0 <= cache.prefetch_used <= cache.prefetch_issued


def test_checkpoint_dtypes_path_matches_resident(checkpoint_factory):
    """GPUs keep the checkpoint's bf16 scales (slots stored as uint16 views);
    run that path here on the CPU against mlx-lm without any cast."""
    from mlx_lm.utils import load

    path = checkpoint_factory("qwen3_moe")
    oracle_model, tokenizer = load(str(path))
    want_tokens, want_logits = greedy_run(oracle_model, tokenizer, steps=8)
    info = load_streamed_model(path, None, LoadOptions(compute_dtype=None)).info
    loaded = load_streamed_model(path, info.expert_bytes * info.top_k, LoadOptions(compute_dtype=None))
    assert loaded.streamer.sole_group().pool.arrays["gate_proj.scales"].dtype == mx.bfloat16
    got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=8)
    assert got_tokens == want_tokens
    np.testing.assert_array_equal(np.array(got_logits.astype(mx.float32)), np.array(want_logits.astype(mx.float32)))
