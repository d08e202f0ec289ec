"""The demo MoE, streamed from disk through a cache that holds at most a
quarter of its experts, answers exactly like the dense SmolLM2 conversion run
fully resident by mlx-lm."""

from __future__ import annotations

import numpy as np
from demo_helpers import chat_ids, float32_resident, greedy

PROMPTS = [
    "Write a Python function that reverses a string.",
    "Explain what a hash table is.",
    "Write a short poem about autumn leaves.",
]
STEPS = 32


def test_streamed_demo_moe_matches_dense_oracle(dense_dir, demo_moe):
    from engine.loader import load_streamed_model

    oracle, tokenizer = float32_resident(dense_dir)
    want = [greedy(oracle, chat_ids(tokenizer, p), STEPS) for p in PROMPTS]
    del oracle

    import json

    disk_total = json.loads((demo_moe / "demo_info.json").read_text())["total_expert_bytes"]
    loaded = load_streamed_model(demo_moe, cache_bytes=disk_total // 4)
    try:
        info = loaded.info
        assert info.model_type == "mixtral" and info.num_experts == 8 and info.top_k == 2
        assert info.cache_budget_bytes <= info.total_expert_bytes // 4
        assert info.cache_slots < info.num_experts * len(info.moe_layers)
        for prompt, (want_tokens, want_logits) in zip(PROMPTS, want):
            ids = chat_ids(loaded.tokenizer, prompt)
            assert ids == chat_ids(tokenizer, prompt)
            got_tokens, got_logits = greedy(loaded.model, ids, STEPS)
            assert got_tokens == want_tokens, prompt
            np.testing.assert_allclose(got_logits, want_logits, rtol=0, atol=1e-3)
        totals = loaded.telemetry.totals()
        assert totals["misses"] > 0  # experts really came from the disk
        assert loaded.streamer.sole_group().cache.peak_used * info.expert_bytes <= info.cache_budget_bytes
    finally:
        loaded.close()
    answer = tokenizer.decode(want[0][0])
    assert "def " in answer and "[::-1]" in answer
