"""--compute-dtype bfloat16/float16: what a Mac user runs (Metal keeps the checkpoint's bf16)
is exact too. Streamed and mlx-lm fully resident, both cast to the same half dtype, give
identical tokens and logits (tolerance 0) for the main MoE families, at the minimum budget
with prefetch on: every token evicts, and the reader converts on-disk bf16 scales (or whole
bf16/f16 expert weights) into half-precision slots with MLX's own rounding.
MLX's CPU half kernels are slow: few decode steps, tiny models.
"""

import mlx.core as mx
import numpy as np
import pytest
from checkpoints import resident_oracle, write_checkpoint
from oracle import greedy_run

from engine.compute_dtype import CHOICES, name_of, resolve
from engine.loader import LoadOptions, load_streamed_model

STEPS = 6
FAMILIES = ("mixtral", "qwen3_moe", "qwen3_5_moe", "deepseek_v3", "gpt_oss", "glm4_moe", "minimax")
HALF = ("bfloat16", "float16")


def _compare(path, dtype_name: str) -> None:
    dtype = getattr(mx, dtype_name)
    oracle, tokenizer = resident_oracle(path, dtype)
    want_tokens, want_logits = greedy_run(oracle, tokenizer, steps=STEPS)
    assert want_logits.dtype == dtype  # the oracle really computes in the half dtype
    probe = load_streamed_model(path, None, LoadOptions(compute_dtype=dtype_name, prefetch=False))
    minimum = probe.info.min_cache_bytes
    probe.close()
    loaded = load_streamed_model(path, minimum, LoadOptions(compute_dtype=dtype_name, prefetch=True))
    try:
        assert all(a.dtype != mx.float32 for g in loaded.streamer.groups for a in g.pool.arrays.values())
        got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=STEPS)
        assert got_logits.dtype == dtype
        assert got_tokens == want_tokens
        np.testing.assert_array_equal(np.array(got_logits.astype(mx.float32)), np.array(want_logits.astype(mx.float32)))
        assert loaded.telemetry.totals()["misses"] > 0
        assert loaded.streamer.prefetch_enabled
    finally:
        loaded.close()


@pytest.mark.parametrize("dtype_name", HALF)
@pytest.mark.parametrize("arch", FAMILIES)
def test_half_precision_streamed_matches_resident(tmp_path, arch, dtype_name):
    _compare(write_checkpoint(tmp_path, arch), dtype_name)


@pytest.mark.parametrize("src", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("dst", ["bfloat16", "float16", "float32"])
def test_reader_conversion_is_mlx_astype(src, dst):
    """Unquantized half experts cannot run here (mlx's CPU gather_mm is float32 only), so the
    reader's conversion of whole weights is checked against MLX's astype bit for bit,
    infinities, subnormals and halfway cases included; a NaN stays a NaN of the same sign
    (its float16 payload is the platform's: MLX's Linux CPU build writes 0x7D00, numpy 0x7E00)."""
    from engine.dtypes import TensorSpec, tag_of_mx
    from engine.reader import convert_into
    from engine.slot_pool import SlotPool

    rng = np.random.default_rng(0)
    values = np.concatenate(
        [rng.standard_normal(4000) * 10.0 ** rng.integers(-8, 5, 4000), [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-42]]
    ).astype(np.float32)
    values[:50] = np.float32(1.0) + np.arange(50, dtype=np.float32) * np.float32(2.0**-8)  # bf16 halfway cases
    on_disk = mx.array(values).astype(getattr(mx, src))
    raw = np.frombuffer(bytes(memoryview(on_disk.view(mx.uint8))), np.uint8)
    pool = SlotPool({"w": TensorSpec((values.size,), tag_of_mx(getattr(mx, dst)))}, 1)
    convert_into(pool.views["w"][0], raw, tag_of_mx(getattr(mx, src)))
    want = on_disk.astype(getattr(mx, dst))
    got = pool.arrays["w"][0]
    assert got.dtype == want.dtype
    nan = np.isnan(np.array(want.astype(mx.float32)))
    assert (np.isnan(np.array(got.astype(mx.float32))) == nan).all() and nan.sum() == 1
    bits = mx.uint32 if dst == "float32" else mx.uint16
    np.testing.assert_array_equal(np.array(got.view(bits))[~nan], np.array(want.view(bits))[~nan])


def test_choices_resolve():
    assert resolve("float16") == mx.float16 and resolve("bfloat16") == mx.bfloat16
    assert resolve("auto") == mx.float32  # this machine runs MLX's CPU backend
    assert resolve(None) is None and name_of(None) == "checkpoint" and name_of(mx.bfloat16) == "bfloat16"
    assert CHOICES == ("auto", "float32", "bfloat16", "float16")
    with pytest.raises(ValueError, match="compute dtype"):
        resolve("int8")
