"""A random checkpoint of a routing trace's shape, and its routers replaced by the trace.

`outlier bench --io-bound --trace TRACE` runs the real engine (pool, reader threads,
prefetch queue, policy, throttle, cold reads) on a model whose experts are the shape the
trace's model routes over (DeepSeek-V2-Lite: 26 MoE layers x 64 experts, top-6, two shared
experts), with every MoE layer's routing taken from the trace instead of its router, so the
cache sees a trained model's routing. Weights are random: only sizes and routing matter here.
Expert and hidden sizes are chosen so that at 25 MB/s reads take most of a token on these
CPUs (as the 397B's do on a Mac); the run reports the measured share.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from outlier_tui.bench.replay import Routing, load_routing

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def config(routing: Routing, hidden: int = 256, expert_hidden: int = 256) -> dict:
    """DeepSeek-V2's layout at the trace's shape: a dense first layer, then one MoE layer per
    trace layer, two shared experts (as DeepSeek-V2-Lite)."""
    return {
        "model_type": "deepseek_v2",
        "vocab_size": 256 + len(SPECIALS),
        "hidden_size": hidden,
        "intermediate_size": hidden,
        "moe_intermediate_size": expert_hidden,
        "num_hidden_layers": routing.layers + 1,
        "first_k_dense_replace": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "n_routed_experts": routing.num_experts,
        "num_experts_per_tok": int(routing.experts.shape[2]),
        "n_shared_experts": 2,
        "kv_lora_rank": 64,
        "q_lora_rank": 64,
        "qk_rope_head_dim": 16,
        "v_head_dim": 32,
        "qk_nope_head_dim": 32,
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 4096,
        "rope_theta": 10000.0,
        "rope_scaling": {
            "beta_fast": 32,
            "beta_slow": 1,
            "factor": 40,
            "mscale": 0.707,
            "mscale_all_dim": 0.707,
            "original_max_position_embeddings": 4096,
            "type": "yarn",
        },
        "tie_word_embeddings": False,
        "eos_token_id": 256 + SPECIALS.index("<|im_end|>"),
    }


def write_checkpoint(path: Path, routing: Routing, hidden: int = 256, expert_hidden: int = 256, seed: int = 0) -> Path:
    """A random 4-bit (group 64) checkpoint of the trace's shape at `path`, with a byte-level
    tokenizer and a chat template. The end-of-turn token's output row is zero, so greedy
    decoding of random weights runs the whole token budget instead of stopping early."""
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm.utils import quantize_model, save_config

    from engine.model_classes import model_classes

    path.mkdir(parents=True, exist_ok=True)
    cfg = config(routing, hidden, expert_hidden)
    model_class, args_class = model_classes(cfg)
    mx.random.seed(seed)
    model = model_class(args_class.from_dict(cfg))
    model.update(tree_map(lambda a: a * 4 if a.ndim == 2 else a, model.parameters()))
    head = model.lm_head.weight
    model.lm_head.weight = mx.where(mx.arange(head.shape[0])[:, None] == cfg["eos_token_id"], 0.0, head)
    model.update(tree_map(lambda a: a.astype(mx.bfloat16) if a.dtype == mx.float32 else a, model.parameters()))
    model, cfg = quantize_model(model, cfg, 64, 4)
    mx.save_safetensors(str(path / "model.safetensors"), dict(tree_flatten(model.parameters())), {"format": "mlx"})
    save_config(cfg, path / "config.json")
    _write_tokenizer(path)
    return path


def _write_tokenizer(path: Path) -> None:
    """One token per byte (no merges), three special tokens, a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "eos_token": "<|im_end|>",
                "bos_token": None,
                "pad_token": "<|endoftext|>",
                "chat_template": CHAT_TEMPLATE,
                "model_max_length": 4096,
            }
        )
    )


class TraceGate(nn.Module):
    """Stands in for a DeepSeek-V2 MoEGate: the experts of the next tokens of this layer are
    the trace's (equal weights), whatever the hidden state. Every layer reads the same rows in
    turn, so a forward of n tokens takes the trace's next n rows at every layer."""

    def __init__(self, experts: np.ndarray, layer: int, start: int) -> None:
        super().__init__()
        self._experts = experts  # [tokens, layers, k]
        self._layer, self._pos = layer, start

    def __call__(self, x: mx.array) -> tuple[mx.array, mx.array]:
        batch, length = x.shape[:2]
        rows = np.arange(self._pos, self._pos + length) % len(self._experts)
        self._pos += length
        inds = self._experts[rows, self._layer]  # [length, k]
        k = inds.shape[-1]
        inds = np.broadcast_to(inds, (batch, length, k))
        return mx.array(inds.astype(np.uint32)), mx.full((batch, length, k), 1.0 / k, dtype=x.dtype)


def install(model: nn.Module, trace: str | Path, start: int | None = None) -> int:
    """Replace every MoE layer's gate by the trace's routing, from token `start` (default: the
    prompt boundary nearest the trace's middle, the half no policy was chosen on). Returns the
    start. Layers are matched in order: the i-th MoE layer takes the trace's layer i."""
    routing = load_routing(trace)
    moe = [layer.mlp for layer in model.layers if hasattr(getattr(layer, "mlp", None), "gate")]
    if len(moe) != routing.layers:
        raise ValueError(f"the model has {len(moe)} MoE layers and the trace {routing.layers}")
    first = routing.middle() if start is None else start
    for i, mlp in enumerate(moe):
        mlp.gate = TraceGate(routing.experts, i, first)
    return first
