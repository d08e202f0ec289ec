"""--page-cache: forced on/off is obeyed, auto measures the model's own experts and says
what it found; reads past the page cache still fill slots exactly."""

import numpy as np
from checkpoints import resident_oracle
from oracle import greedy_run

from engine import page_cache
from engine.loader import LoadOptions, load_streamed_model


def test_forced_choices_are_obeyed_and_reported(checkpoint_factory):
    path = checkpoint_factory("qwen3_moe")
    off = load_streamed_model(path, None, LoadOptions(page_cache=False, prefetch=False))
    on = load_streamed_model(path, None, LoadOptions(page_cache=True, prefetch=False))
    try:
        assert off.reader.uncached and not on.reader.uncached
        assert off.info.page_cache == "page cache off (--page-cache)"
        assert on.info.page_cache == "page cache on (--page-cache)"
    finally:
        off.close()
        on.close()


def test_auto_measures_and_reports(checkpoint_factory):
    path = checkpoint_factory("qwen3_moe")
    loaded = load_streamed_model(path, None, LoadOptions(prefetch=False))
    try:
        layers = [loaded.index.moe_layers[layer] for layer in loaded.info.moe_layers]
        ranges = page_cache.expert_ranges(layers)
        assert ranges and all(size > 0 for _, _, size in ranges)
        text = loaded.info.page_cache
        assert text.startswith(("page cache on:", "page cache off:")) and "x a read from disk" in text
        assert loaded.reader.uncached == text.startswith("page cache off")
    finally:
        loaded.close()


def test_decision_follows_the_margin():
    fast = page_cache.PageCacheDecision(True, disk_s=1.0, cached_s=0.1, nbytes=2**20)
    assert "10.0x" in fast.describe()
    assert page_cache.decide([], forced=None).on  # nothing to measure: the system's default


def test_reads_past_the_page_cache_are_exact(checkpoint_factory):
    path = checkpoint_factory("mixtral")
    model, tokenizer = resident_oracle(path)
    want_tokens, want_logits = greedy_run(model, tokenizer, steps=8)
    info = load_streamed_model(path, None, LoadOptions(prefetch=False, page_cache=False)).info
    loaded = load_streamed_model(path, info.min_cache_bytes, LoadOptions(page_cache=False))
    try:
        got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=8)
        assert got_tokens == want_tokens
        np.testing.assert_array_equal(np.array(got_logits), np.array(want_logits))
    finally:
        loaded.close()
