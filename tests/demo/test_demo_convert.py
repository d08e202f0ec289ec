"""The GGUF → MLX conversion: quantized values kept exact, tokenizer files that
mlx-lm's wrapper and chat template use unchanged, and the numpy forward used
for router clustering agreeing with mlx-lm."""

from __future__ import annotations

import json

import numpy as np
from demo_helpers import chat_ids, float32_resident


def test_gguf_tensors_stay_quantized_and_exact(demo_gguf, dense_dir):
    import mlx.core as mx
    from safetensors.numpy import load_file

    from engine.demo.gguf_convert import load_gguf

    weights, meta = load_gguf(demo_gguf)
    # mx.load keeps Q4_1 / Q8_0 as MLX affine triples with groups of 32
    assert weights["blk.0.ffn_down.weight"].dtype == mx.uint32
    assert weights["blk.0.ffn_down.weight"].shape == (576, 1536 * 4 // 32)
    assert weights["blk.0.ffn_down.scales"].shape == (576, 1536 // 32)
    assert weights["token_embd.weight"].shape == (49152, 576 * 8 // 32)  # 8-bit embedding

    dense = load_file(str(dense_dir / "model.safetensors"))
    for gguf_name, name in [
        ("blk.3.ffn_gate", "model.layers.3.mlp.gate_proj"),
        ("blk.3.ffn_down", "model.layers.3.mlp.down_proj"),
        ("blk.3.attn_v", "model.layers.3.self_attn.v_proj"),
        ("token_embd", "model.embed_tokens"),
    ]:
        for part in ("weight", "scales", "biases"):
            np.testing.assert_array_equal(dense[f"{name}.{part}"], np.array(weights[f"{gguf_name}.{part}"]))
    # Q and K are the same rows, un-permuted per head (interleaved pairs -> halves)
    q_gguf = np.array(weights["blk.3.attn_q.weight"])
    q = dense["model.layers.3.self_attn.q_proj.weight"]
    assert not np.array_equal(q, q_gguf)
    np.testing.assert_array_equal(q[0], q_gguf[0])
    np.testing.assert_array_equal(q[1], q_gguf[2])  # x1 of head 0 was row 2 in llama.cpp order
    np.testing.assert_array_equal(q[32], q_gguf[1])  # y0 of head 0 was row 1

    config = json.loads((dense_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["tie_word_embeddings"] is True
    assert config["rope_theta"] == float(meta["llama.rope.freq_base"])
    assert config["quantization"]["model.embed_tokens"]["bits"] == 8
    assert config["quantization"]["bits"] == 4 and config["quantization"]["group_size"] == 32


def test_tokenizer_files_work_with_mlx_lm(demo_gguf, dense_dir, demo_moe):
    from mlx_lm.tokenizer_utils import load as load_wrapper

    from engine.demo.gguf_convert import load_gguf

    _, meta = load_gguf(demo_gguf)
    tok_cfg = json.loads((dense_dir / "tokenizer_config.json").read_text())
    assert tok_cfg["chat_template"] == meta["tokenizer.chat_template"]
    for folder in (dense_dir, demo_moe):
        tok = load_wrapper(folder)
        ids = chat_ids(tok, "Hi!")
        assert ids[0] == 1 and tok.convert_ids_to_tokens(1) == "<|im_start|>"  # special: one id
        text = tok.decode(ids)
        assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
        assert text.endswith("<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n")
        assert tok.eos_token_ids == {2}
    # digits are split one by one (llama.cpp's "smollm" pre-tokenizer), text round-trips
    assert len(tok.encode("12345")) == 5
    sample = "Hello world, ça va? 3.14 — naïve 東京 🙂\n\tdef f(x): return x"
    assert tok.decode(tok.encode(sample)) == sample
    assert tok.convert_ids_to_tokens(tok.encode(" world")) == ["Ġworld"]


def test_numpy_forward_matches_mlx_lm(dense_dir):
    """The router features come from a numpy forward pass; it must be the model."""
    import mlx.core as mx
    from safetensors.numpy import load_file

    from engine.demo.features import NumpyLlama

    model, tok = float32_resident(dense_dir)
    config = json.loads((dense_dir / "config.json").read_text())
    np_model = NumpyLlama(load_file(str(dense_dir / "model.safetensors")), config)
    a = chat_ids(tok, "Name three colours.")
    b = chat_ids(tok, "Write a haiku about rain and wind.")
    np_model.ffn_inputs([a, b])
    got = np_model.logits(np_model.final_hidden[len(a) :])
    want = np.array(model(mx.array(b)[None])[0])
    np.testing.assert_allclose(got, want, atol=2e-3)
