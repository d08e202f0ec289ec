"""Every case of tests/support_matrix.py (each mlx-lm MoE architecture, each expert format)
computes exactly what mlx-lm computes fully resident: prefill and 16 decode steps, logits
identical (tolerance 0), at a cache budget that holds every expert, about half, and the
legal minimum (one layer's top-k in every slot pool), prefetch on at the two smaller
budgets; the cache never holds more bytes than its budget. One tiny checkpoint and one
oracle run per case, shared by the budgets.
"""

import threading

import mlx.core as mx
import numpy as np
import pytest
from checkpoints import resident_oracle, write_checkpoint
from oracle import greedy_run
from support_matrix import RESIDENT, STREAMED, all_cases, architecture_cases, backend_cannot_run

from engine.cache_policy import NextUsePolicy
from engine.loader import LoadOptions, load_streamed_model
from engine.prefill import CHUNK_BY_CHUNK_ONLY, FALLBACK_NOTICE

STEPS = 16
BUDGETS = ("all", "half", "min")
# Routers with more outputs than routed experts ("zero experts"): no prefetch guess.
NO_ROUTER_GUESS = ("longcat_flash",)
CASES = all_cases()


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """case -> (checkpoint path, oracle tokens, oracle logits, ModelInfo), built once; skips the
    test where this backend cannot run the case in mlx-lm itself (support_matrix.BACKEND_DEPENDENT)."""
    built = {}

    def get(case):
        if case.id not in built:
            path = write_checkpoint(tmp_path_factory.mktemp(case.id), case.arch, fmt=case.fmt, shards=case.shards)
            model, tokenizer = resident_oracle(path)
            try:
                tokens, logits = greedy_run(model, tokenizer, steps=STEPS)
            except Exception as exc:  # ask the backend: can mlx-lm itself run this case here?
                if (why := backend_cannot_run(case, exc)) is None:
                    raise
                built[case.id] = why
            else:
                probe = load_streamed_model(path)
                probe.close()
                built[case.id] = (path, tokens, np.array(logits), probe.info)
        if isinstance(built[case.id], str):
            pytest.skip(built[case.id])
        return built[case.id]

    return get


def _budget(info, budget: str) -> int:
    if budget == "all":
        return info.total_expert_bytes
    if budget == "half":
        return max(info.total_expert_bytes // 2, info.min_cache_bytes)
    return info.min_cache_bytes


def _skip_unless(case, status):
    if case.status != status:
        pytest.skip(f"{case.id} is {case.status}")


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("case", [c for c in CASES if c.status != RESIDENT], ids=lambda c: c.id)
def test_streamed_matches_mlx_lm(reference, case, budget):
    _skip_unless(case, STREAMED)
    path, want_tokens, want_logits, info = reference(case)
    assert info.moe_layers and info.notice in ("", FALLBACK_NOTICE), "every MoE layer must stream"
    cache_bytes = _budget(info, budget)
    # prefetch forced on below "all": the next layer's router found in every architecture,
    # and speculative reads never change what is computed
    loaded = load_streamed_model(path, cache_bytes, LoadOptions(prefetch=budget != "all"))
    try:
        got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=STEPS)
        assert got_tokens == want_tokens
        np.testing.assert_array_equal(np.array(got_logits), want_logits)

        streamer = loaded.streamer
        assert sum(g.pool.nbytes for g in streamer.groups) <= cache_bytes
        assert streamer.cache_bytes[1] <= cache_bytes
        assert loaded.telemetry.totals()["cache_peak_bytes"] <= cache_bytes
        assert loaded.telemetry.totals()["misses"] > 0
        if budget == "half":
            found = not case.arch.startswith(NO_ROUTER_GUESS)
            # the default policy needs no router: ids only (cache_policy.NextUsePolicy)
            assert all(isinstance(g.cache.policy, NextUsePolicy) for g in streamer.groups)
            if found:  # the guesses were made (the next layer's router found by shape) and read
                assert sum(g.cache.prefetch_issued for g in streamer.groups) > 0
        if budget == "min":
            assert all(g.cache.num_slots == info.top_k for g in streamer.groups)
        if budget == "all":
            assert streamer.all_resident
            # every decoded token ran each MoE block as one compiled call (engine.resident_block)
            blocks = [m._whole_block for _, m in loaded.model.named_modules() if hasattr(m, "_whole_block")]
            assert len(blocks) == len(info.moe_layers)
            assert [b.failed for b in blocks if not b.traced] == []
    finally:
        loaded.close()


LAYER_MAJOR_STEP = 48  # the oracle's prompt is about 150 tokens: four prefill chunks


@pytest.mark.parametrize("case", [c for c in architecture_cases() if c.status != RESIDENT], ids=lambda c: c.id)
def test_a_prompt_of_several_chunks_runs_layer_by_layer_with_the_resident_logits(reference, case, monkeypatch):
    """engine.prefill: every chunk through layer L before layer L+1 (each expert read once per
    prompt), at about half the budget with prefetch on; the logits of mlx-lm's chunked prefill.
    The named fallbacks (CHUNK_BY_CHUNK_ONLY) run chunk by chunk, say so at load, and match too."""
    _skip_unless(case, STREAMED)
    from mlx_lm.models.cache import make_prompt_cache
    from oracle import PROMPT

    from engine import prefill as prefill_module

    monkeypatch.setattr(prefill_module, "PREFILL_STEP", LAYER_MAJOR_STEP)
    path, _, _, info = reference(case)
    model, tokenizer = resident_oracle(path)
    ids = tokenizer.encode(PROMPT)
    cache = make_prompt_cache(model)
    for start in range(0, len(ids), LAYER_MAJOR_STEP):
        want = model(mx.array([ids[start : start + LAYER_MAJOR_STEP]]), cache=cache)[:, -1, :]
    loaded = load_streamed_model(path, _budget(info, "half"), LoadOptions(prefetch=True))
    try:
        assert not loaded.streamer.all_resident
        result = prefill_module.prefill(
            loaded.model,
            loaded.streamer,
            make_prompt_cache(loaded.model),
            ids,
            0,
            cancel=threading.Event(),
            begin_step=lambda: None,
            layer_major=info.model_type not in CHUNK_BY_CHUNK_ONLY,
        )
        assert result.layer_major == (info.model_type not in CHUNK_BY_CHUNK_ONLY) and result.logits is not None
        assert (info.notice == FALLBACK_NOTICE) == (not result.layer_major)
        np.testing.assert_array_equal(np.array(result.logits), np.array(want))
    finally:
        loaded.close()


@pytest.mark.parametrize("case", [c for c in CASES if c.status == RESIDENT], ids=lambda c: c.id)
def test_resident_only_layout_matches_mlx_lm_with_a_notice(reference, case):
    path, want_tokens, want_logits, info = reference(case)
    assert info.moe_layers == () and "fully resident" in info.notice and "\n" not in info.notice
    loaded = load_streamed_model(path)
    try:
        got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=STEPS)
        assert got_tokens == want_tokens
        np.testing.assert_array_equal(np.array(got_logits), want_logits)
    finally:
        loaded.close()


def test_mixed_precision_gets_one_pool_per_expert_shape(reference):
    """Layer 0's experts at 8 bits, the rest at 4: two pools sharing one budget."""
    case = next(c for c in CASES if c.fmt.startswith("mixed"))
    path, _, _, info = reference(case)
    assert len(info.expert_bytes_by_shape) == 2
    assert info.expert_bytes == max(info.expert_bytes_by_shape)
    assert info.min_cache_bytes == info.top_k * sum(info.expert_bytes_by_shape)
    budget = info.min_cache_bytes + (info.total_expert_bytes - info.min_cache_bytes) // 3
    loaded = load_streamed_model(path, cache_bytes=budget)
    try:
        groups = loaded.streamer.groups
        assert sorted(len(g.rows) for g in groups) == [1, len(info.moe_layers) - 1]
        held = sum(g.pool.nbytes for g in groups)
        assert budget - max(info.expert_bytes_by_shape) < held <= budget
        # the split follows each shape's share of all expert bytes
        for g in groups:
            share = g.slot_bytes * g.cache.num_slots / held
            whole = g.slot_bytes * len(g.rows) * info.num_experts / info.total_expert_bytes
            assert abs(share - whole) < 0.2
        # figures of one cache would cover one pool: asking for the sole one is refused
        with pytest.raises(ValueError, match="2 shapes"):
            loaded.streamer.sole_group()
        issued, used, cancelled = loaded.streamer.prefetch_totals()
        assert issued == sum(g.cache.prefetch_issued for g in groups)
        assert used == sum(g.cache.prefetch_used for g in groups)
        assert cancelled == sum(g.cache.prefetch_cancelled for g in groups)
    finally:
        loaded.close()


def test_readme_support_table_is_generated_from_this_test_list():
    from pathlib import Path

    from support_matrix import readme_table, render_table

    readme = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text()
    assert readme_table(readme) == render_table(), "run: python tests/support_matrix.py --write"


def test_per_expert_tensors_are_read_where_they_are(reference):
    """The raw Hugging Face layout: nothing read at load (mlx-lm's lazy stack is never
    evaluated), then exactly one read of each tensor of each missed expert (prefetch off:
    its load-time measurement and its guesses read experts too)."""
    case = next(c for c in CASES if c.fmt == "per-expert-tensors" and c.arch == "mixtral")
    path, _, _, info = reference(case)
    loaded = load_streamed_model(path, info.min_cache_bytes, LoadOptions(prefetch=False))
    try:
        assert not any(files.stacked for files in loaded.streamer.layers)
        assert loaded.telemetry.totals()["bytes_read"] == 0
        greedy_run(loaded.model, loaded.tokenizer, steps=2, prompt="hi")
        totals = loaded.telemetry.totals()
        per_expert = loaded.streamer.layers[0].disk_bytes_per_expert
        assert totals["bytes_read"] == totals["misses"] * per_expert > 0
    finally:
        loaded.close()


def test_only_the_backend_limit_named_for_a_case_skips_it():
    """A backend-dependent case skips on the error mlx raises for that limit, nothing else; any
    other case never skips on it."""
    case = next(c for c in CASES if c.backend == "nvfp4-global-scale")
    limit = ValueError("[gather_qmm] Global scale is only supported on the GPU.")
    assert "nvfp4-global-scale" in backend_cannot_run(case, limit)
    assert backend_cannot_run(case, ValueError("[gather_qmm] shapes do not match")) is None
    assert backend_cannot_run(next(c for c in CASES if not c.backend), limit) is None
