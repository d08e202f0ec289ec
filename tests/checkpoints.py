"""Tiny random checkpoints in the mlx-community format, for tests.

Each architecture gets a config small enough to run in milliseconds on the
CPU; weights are random (seeded), saved bf16 and optionally quantized with
mlx-lm's own quantize_model, exactly as `mlx_lm.convert -q` would.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map

VOCAB = 300  # 256 byte tokens + specials, padded

_COMMON = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
               num_key_value_heads=2, rms_norm_eps=1e-5, tie_word_embeddings=False)

CONFIGS: dict[str, dict] = {
    "mixtral": dict(_COMMON, model_type="mixtral", intermediate_size=64, num_local_experts=8,
                    num_experts_per_tok=2, rope_theta=10000.0),
    "qwen3_moe": dict(_COMMON, model_type="qwen3_moe", intermediate_size=128, num_experts=8,
                      num_experts_per_tok=2, decoder_sparse_step=1, mlp_only_layers=[],
                      moe_intermediate_size=64, head_dim=16, rope_theta=10000.0,
                      max_position_embeddings=512, norm_topk_prob=True),
    "qwen3_next": dict(_COMMON, model_type="qwen3_next", intermediate_size=128,
                       linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=16,
                       linear_value_head_dim=16, linear_conv_kernel_dim=4, num_experts=8,
                       num_experts_per_tok=2, decoder_sparse_step=1,
                       shared_expert_intermediate_size=64, mlp_only_layers=[],
                       moe_intermediate_size=64, rope_theta=10000.0, partial_rotary_factor=0.25,
                       max_position_embeddings=512, head_dim=16, full_attention_interval=2,
                       num_hidden_layers=4),
    "qwen3_5_moe": dict(model_type="qwen3_5_moe", text_config=dict(
        _COMMON, model_type="qwen3_5_moe_text", intermediate_size=128, linear_num_value_heads=4,
        linear_num_key_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
        linear_conv_kernel_dim=4, num_experts=8, num_experts_per_tok=2,
        shared_expert_intermediate_size=64, moe_intermediate_size=64, head_dim=16,
        full_attention_interval=2, num_hidden_layers=4, max_position_embeddings=512,
        rope_parameters={"rope_theta": 10000.0, "partial_rotary_factor": 0.25, "rope_type": "default"})),
    "deepseek_v3": dict(_COMMON, model_type="deepseek_v3", intermediate_size=128,
                        moe_intermediate_size=64, n_shared_experts=1, n_routed_experts=8,
                        num_experts_per_tok=2, kv_lora_rank=32, q_lora_rank=48,
                        qk_rope_head_dim=8, v_head_dim=16, qk_nope_head_dim=16, n_group=2,
                        topk_group=1, first_k_dense_replace=1, num_key_value_heads=4,
                        max_position_embeddings=512, rope_theta=10000.0),
    "olmoe": dict(_COMMON, model_type="olmoe", intermediate_size=64, num_experts=8,
                  num_experts_per_tok=2, rope_theta=10000.0),
    "llama": dict(_COMMON, model_type="llama", intermediate_size=128, rope_theta=10000.0),
}

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_model(arch: str, seed: int = 0):
    from mlx_lm.utils import _get_classes

    config = json.loads(json.dumps(CONFIGS[arch]))
    model_class, args_class = _get_classes(config)
    mx.random.seed(seed)
    model = model_class(args_class.from_dict(config))
    # Random uniform init gives near-uniform routers; widen them so routing varies.
    params = tree_map(lambda a: a * 4 if a.ndim == 2 else a, model.parameters())
    model.update(params)
    model.update(tree_map(lambda a: a.astype(mx.bfloat16) if a.dtype == mx.float32 else a,
                          model.parameters()))
    mx.eval(model.parameters())
    return model, config


def write_checkpoint(path: Path, arch: str, *, bits: int | None = 4, group_size: int = 32,
                     shards: int = 1, seed: int = 0) -> Path:
    """Write a tiny random `arch` checkpoint to `path`; bits=None leaves it unquantized."""
    from mlx_lm.utils import quantize_model, save_config

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model, config = build_model(arch, seed)
    if bits is not None:
        model, config = quantize_model(model, config, group_size, bits)
    weights = dict(tree_flatten(model.parameters()))
    names = sorted(weights)
    if shards == 1:
        mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "mlx"})
    else:
        weight_map = {}
        for i in range(shards):
            part = names[i::shards]
            fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            mx.save_safetensors(str(path / fname), {n: weights[n] for n in part},
                                metadata={"format": "mlx"})
            weight_map.update({n: fname for n in part})
        (path / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}, indent=1))
    save_config(config, path / "config.json")
    write_tokenizer(path)
    return path


def write_tokenizer(path: Path) -> None:
    """A byte-level BPE tokenizer with no merges (one token per byte) and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(byte_chars))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.add_special_tokens(specials)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|im_end|>",
        "bos_token": None,
        "pad_token": "<|endoftext|>",
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": 4096,
    }))


def resident_oracle(path: Path):
    """mlx-lm's own load of the checkpoint, fully in memory, floats cast to float32
    (what the engine computes in on the CPU)."""
    from mlx_lm.utils import load

    model, tokenizer = load(str(path))
    model.update(tree_map(lambda a: a.astype(mx.float32) if a.dtype in (mx.float16, mx.bfloat16) else a,
                          model.parameters()))
    mx.eval(model.parameters())
    return model, tokenizer


def expert_param_bytes(model: nn.Module) -> int:
    return sum(v.nbytes for k, v in tree_flatten(model.parameters()) if "switch_mlp" in k)
