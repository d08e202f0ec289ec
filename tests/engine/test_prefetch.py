"""Prefetch changes what is read and when, never what is computed: logits stay
identical to mlx-lm fully resident at every budget, with every part of the
prefetch pipeline on or off; and the load-time decision is recorded."""

import time

import mlx.core as mx
import numpy as np
import pytest
from checkpoints import resident_oracle
from oracle import PROMPT, greedy_run

from engine.expert_streamer import PrefetchMode
from engine.loader import LoadOptions, load_streamed_model

FULL = PrefetchMode(enabled=True)
MODES = {
    "full": FULL,
    "today": PrefetchMode(
        enabled=True, prefill=False, early=False, demand_first=False, cancel_stale=False, cold_admit=False
    ),
    "no-prefill": PrefetchMode(enabled=True, prefill=False),
    "late": PrefetchMode(enabled=True, early=False),
    "fifo": PrefetchMode(enabled=True, demand_first=False),
    "keep-stale": PrefetchMode(enabled=True, cancel_stale=False),
    "cold-admit": PrefetchMode(enabled=True, cold_admit=True),
}


def _budget(path, extra_slots):
    info = load_streamed_model(path, None, LoadOptions(prefetch=False)).info
    if extra_slots is None:
        return info.total_expert_bytes // 2
    return info.expert_bytes * (info.top_k + extra_slots)


@pytest.fixture(scope="module")
def oracle(checkpoint_factory):
    out = {}
    for arch in ("mixtral", "qwen3_moe"):
        path = checkpoint_factory(arch)
        model, tokenizer = resident_oracle(path)
        out[arch] = (path, *greedy_run(model, tokenizer, steps=24))
    return out


@pytest.mark.parametrize("arch", ["mixtral", "qwen3_moe"])
@pytest.mark.parametrize("extra_slots", [0, 1, 3, None])  # None: half of all experts
def test_full_prefetch_matches_resident_at_every_budget(oracle, arch, extra_slots):
    path, want_tokens, want_logits = oracle[arch]
    loaded = load_streamed_model(path, _budget(path, extra_slots), LoadOptions(prefetch=FULL))
    try:
        got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=24)
        assert got_tokens == want_tokens
        np.testing.assert_array_equal(np.array(got_logits), np.array(want_logits))
        cache = loaded.streamer.sole_group().cache
        assert cache.peak_used <= cache.num_slots
        if extra_slots:
            assert cache.prefetch_issued > 0
    finally:
        loaded.close()


@pytest.mark.parametrize("name", list(MODES))
def test_every_prefetch_variant_matches_resident(oracle, name):
    path, want_tokens, want_logits = oracle["mixtral"]
    loaded = load_streamed_model(path, _budget(path, 2), LoadOptions(prefetch=MODES[name]))
    try:
        got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=24)
        assert got_tokens == want_tokens
        np.testing.assert_array_equal(np.array(got_logits), np.array(want_logits))
    finally:
        loaded.close()


def test_prefill_reads_the_next_layer_ahead(checkpoint_factory):
    """A prompt's call at layer L queues layer L+1's predicted experts (TTFT overlap);
    with prefill prediction off, a prompt issues no speculative read."""
    path = checkpoint_factory("mixtral")
    budget = _budget(path, None)
    for mode, expect in ((FULL, True), (PrefetchMode(enabled=True, prefill=False), False)):
        loaded = load_streamed_model(path, budget, LoadOptions(prefetch=mode))
        try:
            ids = mx.array([loaded.tokenizer.encode(PROMPT)])
            mx.eval(loaded.model(ids))
            assert (loaded.streamer.sole_group().cache.prefetch_issued > 0) == expect
        finally:
            loaded.close()


def test_auto_prefetch_is_decided_at_load_from_measurements(checkpoint_factory):
    path = checkpoint_factory("mixtral")
    loaded = load_streamed_model(path, cache_bytes=_budget(path, 2))
    try:
        decision = loaded.streamer.prefetch_decision
        assert decision["read_s_per_expert"] > 0 and decision["predict_s_per_layer"] > 0
        assert loaded.streamer.prefetch_enabled == decision["enabled"]
        # decoding starts with prefetch off; a judge turns it on where prefetch is on at all
        judge = loaded.streamer.decode_judge
        assert (judge is not None) == decision["enabled"] and not loaded.streamer.mode.decode
        if judge is not None:
            assert judge.read_s == decision["read_s_per_expert"] and decision["decode_windows"] is judge.history
        per_expert = sum(t.expert_nbytes for t in loaded.streamer.layers[0].tensors.values())
        assert loaded.telemetry.totals()["bytes_read"] <= 4 * per_expert  # a sample, not tensors
        assert loaded.streamer.sole_group().cache.used == 0  # the sample reads hold no slot
    finally:
        loaded.close()
    for fixed in (True, False):  # an explicit choice is not second-guessed
        loaded = load_streamed_model(path, _budget(path, 2), LoadOptions(prefetch=fixed))
        assert loaded.streamer.prefetch_decision is None and loaded.streamer.prefetch_enabled == fixed
        assert loaded.streamer.decode_judge is None
        loaded.close()


@pytest.mark.parametrize(
    ("read_s", "predict_s", "on"),
    [
        (0.3, 0.1, True),  # a read costs three guesses: guessing ahead saves time
        (0.1, 0.1, False),  # a read costs one guess: half the guesses wrong, it would not pay
        (0.0, 0.1, False),  # reads from a fast disk (microseconds) against a slow predictor
    ],
)
def test_prefetch_decision_follows_the_measured_read_and_guess_times(checkpoint_factory, read_s, predict_s, on):
    """Reads and guesses slowed by known amounts (sleeps around the real ones): prefetch is on
    where a read takes clearly over twice a guess, off where it does not."""
    path = checkpoint_factory("mixtral")
    loaded = load_streamed_model(path, _budget(path, 2), LoadOptions(prefetch=False))
    try:
        streamer = loaded.streamer
        submit = streamer.reader.submit_units

        def slow_submit(units, *args):
            time.sleep(read_s)
            return submit(units, *args)

        def slow_guess(x):
            time.sleep(predict_s)
            return mx.zeros((1, 2), mx.int32)

        streamer.reader.submit_units = slow_submit
        streamer.decide_prefetch(slow_guess, 8)
        decision = streamer.prefetch_decision
        assert decision["read_s_per_expert"] >= read_s and decision["predict_s_per_layer"] >= predict_s
        assert decision["enabled"] is on and streamer.prefetch_enabled is on
        assert (streamer.decode_judge is not None) is on
    finally:
        loaded.close()


def test_all_resident_budget_needs_no_prefetch_decision(checkpoint_factory):
    path = checkpoint_factory("mixtral")
    loaded = load_streamed_model(path, cache_bytes=None)
    info = loaded.info
    loaded.close()
    loaded = load_streamed_model(path, cache_bytes=info.total_expert_bytes)
    assert loaded.streamer.all_resident and loaded.streamer.prefetch_decision is None
    loaded.close()
