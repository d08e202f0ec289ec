"""GGUF (llama.cpp) → dense MLX llama checkpoint plus Hugging Face tokenizer files.

mx.load reads the GGUF's Q4_1 and Q8_0 tensors as MLX affine-quantized
triples (uint32 packed weight, float16 scales and biases, group size 32), so
no value is re-quantized: the dense checkpoint holds the GGUF's exact numbers.
The one transformation is undoing llama.cpp's rotary row permutation of the
Q and K projections (HF / mlx-lm apply RoPE to the two halves of each head,
llama.cpp to interleaved pairs).
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

import numpy as np

from engine.demo.errors import DemoBuildError
from engine.demo.progress import Progress
from engine.demo.safetensors_io import write_checkpoint
from engine.dtypes import TensorSpec, tag_of_numpy

GROUP_SIZE = 32

_ATTN = {"attn_q": "q_proj", "attn_k": "k_proj", "attn_v": "v_proj", "attn_output": "o_proj"}
_FFN = {"ffn_gate": "gate_proj", "ffn_up": "up_proj", "ffn_down": "down_proj"}


def load_gguf(path: Path) -> tuple[dict, dict]:
    """The GGUF's tensors (MLX arrays, as mx.load gives them) and its metadata
    with scalar values turned into Python numbers."""
    import mlx.core as mx

    try:
        weights, meta = typing.cast(tuple[dict, dict], mx.load(str(path), return_metadata=True))
    except (RuntimeError, ValueError, OSError) as exc:
        raise DemoBuildError(f"could not read the GGUF {path} ({exc})") from None
    clean = {}
    for key, value in meta.items():
        if isinstance(value, mx.array):
            value = value.item() if value.size == 1 else np.array(value)
        clean[key] = value
    return weights, clean


def hparams(meta: dict) -> dict:
    if meta.get("general.architecture") != "llama":
        raise DemoBuildError(f"the GGUF is a {meta.get('general.architecture')} model, not llama")
    p = "llama."
    n_embd = int(meta[p + "embedding_length"])
    n_head = int(meta[p + "attention.head_count"])
    return {
        "hidden_size": n_embd,
        "intermediate_size": int(meta[p + "feed_forward_length"]),
        "num_hidden_layers": int(meta[p + "block_count"]),
        "num_attention_heads": n_head,
        "num_key_value_heads": int(meta.get(p + "attention.head_count_kv", n_head)),
        "head_dim": int(meta.get(p + "rope.dimension_count", n_embd // n_head)),
        "rms_norm_eps": float(meta[p + "attention.layer_norm_rms_epsilon"]),
        "rope_theta": float(meta.get(p + "rope.freq_base", 10000.0)),
        "max_position_embeddings": int(meta.get(p + "context_length", 2048)),
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
    }


def quantization_config(embed_bits: int) -> dict:
    """config.json "quantization": 4-bit groups of 32, the embedding at its own bits."""
    q = {"group_size": GROUP_SIZE, "bits": 4, "mode": "affine"}
    if embed_bits != 4:
        q["model.embed_tokens"] = {"group_size": GROUP_SIZE, "bits": embed_bits, "mode": "affine"}
    return q


def base_config(meta: dict, embed_bits: int) -> dict:
    """The config.json fields the dense and the MoE checkpoints share."""
    hp = hparams(meta)
    quant = quantization_config(embed_bits)
    cfg = {
        "vocab_size": hp["vocab_size"],
        "hidden_size": hp["hidden_size"],
        "intermediate_size": hp["intermediate_size"],
        "num_hidden_layers": hp["num_hidden_layers"],
        "num_attention_heads": hp["num_attention_heads"],
        "num_key_value_heads": hp["num_key_value_heads"],
        "head_dim": hp["head_dim"],
        "rms_norm_eps": hp["rms_norm_eps"],
        "rope_theta": hp["rope_theta"],
        "rope_traditional": False,
        "max_position_embeddings": hp["max_position_embeddings"],
        "tie_word_embeddings": True,
        "bos_token_id": int(meta.get("tokenizer.ggml.bos_token_id", 1)),
        "eos_token_id": int(meta.get("tokenizer.ggml.eos_token_id", 2)),
        "pad_token_id": int(meta.get("tokenizer.ggml.padding_token_id", 2)),
        "torch_dtype": "float16",
        "quantization": quant,
        "quantization_config": quant,
    }
    return cfg


def _unpermute_rope_rows(a: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's convert permute(): rows of each head go from
    interleaved (x0, y0, x1, y1, ...) back to halves (x0, x1, ..., y0, y1, ...).
    Quantization runs along the input dim, so rows move whole: exact."""
    rows = a.shape[0]
    head_dim = rows // n_head
    return a.reshape(n_head, head_dim // 2, 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)


def _np(a) -> np.ndarray:
    return np.array(a, copy=False) if isinstance(a, np.ndarray) else np.array(a)


def _quant_triple(weights: dict, gguf_name: str, in_dims: int) -> tuple[dict[str, np.ndarray], int]:
    """(weight, scales, biases) of one quantized GGUF tensor as numpy, and its bits."""
    try:
        w, s, b = (weights[f"{gguf_name}.{k}"] for k in ("weight", "scales", "biases"))
    except KeyError:
        raise DemoBuildError(
            f"the GGUF tensor {gguf_name} is not quantized the way this builder expects "
            f"(mx.load gave no scales/biases); the installed mlx may read GGUF differently"
        ) from None
    w, s, b = _np(w), _np(s), _np(b)
    if w.dtype != np.uint32 or s.shape[-1] * GROUP_SIZE != in_dims:
        raise DemoBuildError(
            f"the GGUF tensor {gguf_name} has an unexpected layout "
            f"({w.dtype}{w.shape}, scales {s.shape}); expected groups of {GROUP_SIZE}"
        )
    bits = w.shape[-1] * 32 // in_dims
    return {"weight": w, "scales": s.astype(np.float16), "biases": b.astype(np.float16)}, bits


def dense_tensors(weights: dict, meta: dict) -> tuple[dict[str, np.ndarray], int]:
    """The llama-format (mlx-lm naming) tensors of the GGUF, Q/K un-permuted,
    and the embedding's bits."""
    hp = hparams(meta)
    d = hp["hidden_size"]
    out: dict[str, np.ndarray] = {}
    emb, embed_bits = _quant_triple(weights, "token_embd", d)
    for k, v in emb.items():
        out[f"model.embed_tokens.{k}"] = v
    for i in range(hp["num_hidden_layers"]):
        pre = f"model.layers.{i}"
        for g, name in _ATTN.items():
            in_dims = d
            triple, bits = _quant_triple(weights, f"blk.{i}.{g}", in_dims)
            if bits != 4:
                raise DemoBuildError(f"blk.{i}.{g} is {bits}-bit, expected 4-bit (Q4_1)")
            if g == "attn_q":
                triple = {k: _unpermute_rope_rows(v, hp["num_attention_heads"]) for k, v in triple.items()}
            elif g == "attn_k":
                triple = {k: _unpermute_rope_rows(v, hp["num_key_value_heads"]) for k, v in triple.items()}
            for k, v in triple.items():
                out[f"{pre}.self_attn.{name}.{k}"] = v
        for g, name in _FFN.items():
            in_dims = hp["intermediate_size"] if g == "ffn_down" else d
            triple, bits = _quant_triple(weights, f"blk.{i}.{g}", in_dims)
            if bits != 4:
                raise DemoBuildError(f"blk.{i}.{g} is {bits}-bit, expected 4-bit (Q4_1)")
            for k, v in triple.items():
                out[f"{pre}.mlp.{name}.{k}"] = v
        out[f"{pre}.input_layernorm.weight"] = _np(weights[f"blk.{i}.attn_norm.weight"]).astype(np.float32)
        out[f"{pre}.post_attention_layernorm.weight"] = _np(weights[f"blk.{i}.ffn_norm.weight"]).astype(np.float32)
    out["model.norm.weight"] = _np(weights["output_norm.weight"]).astype(np.float32)
    if "output.weight" in weights:
        raise DemoBuildError("the GGUF has a separate output matrix; expected tied embeddings")
    return out, embed_bits


# ---- tokenizer ---------------------------------------------------------------

_CONTROL = 3  # llama.cpp token type of control (special) tokens
_USER_DEFINED = 4


def tokenizer_json(meta: dict) -> dict:
    """A Hugging Face tokenizers byte-level BPE built from the GGUF vocabulary
    and merges. The pre-tokenizer is llama.cpp's "smollm" one: single digits,
    then the GPT-2 regex."""
    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise DemoBuildError("the GGUF's tokenizer is not byte-level BPE (gpt2)")
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    types = [int(t) for t in np.asarray(meta["tokenizer.ggml.token_type"]).tolist()]
    merges: list[str] = list(meta["tokenizer.ggml.merges"])
    if any(m.count(" ") != 1 for m in merges):
        raise DemoBuildError("a GGUF merge rule is not of the form 'a b'")
    added = [
        {
            "id": i,
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": types[i] == _CONTROL,
        }
        for i, tok in enumerate(tokens)
        if types[i] in (_CONTROL, _USER_DEFINED)
    ]
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", **byte_level},
            ],
        },
        "post_processor": {"type": "ByteLevel", **byte_level},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {tok: i for i, tok in enumerate(tokens)},
            "merges": merges,
        },
    }


def tokenizer_config(meta: dict) -> dict:
    tokens = list(meta["tokenizer.ggml.tokens"])
    types = [int(t) for t in np.asarray(meta["tokenizer.ggml.token_type"]).tolist()]

    def tok(key: str, default: int) -> str:
        return tokens[int(meta.get(key, default))]

    specials = [t for t, ty in zip(tokens, types) if ty == _CONTROL]
    cfg = {
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": False,
        "add_prefix_space": bool(meta.get("tokenizer.ggml.add_space_prefix", False)),
        "bos_token": tok("tokenizer.ggml.bos_token_id", 1),
        "eos_token": tok("tokenizer.ggml.eos_token_id", 2),
        "pad_token": tok("tokenizer.ggml.padding_token_id", 2),
        "unk_token": tok("tokenizer.ggml.unknown_token_id", 0),
        "additional_special_tokens": [t for t in specials if t.startswith("<|im_")],
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(meta.get("llama.context_length", 2048)),
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    template = meta.get("tokenizer.chat_template")
    if template:
        cfg["chat_template"] = template
    return cfg


def write_tokenizer(meta: dict, out_dir: Path) -> None:
    (out_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json(meta), ensure_ascii=False))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(meta), indent=2, ensure_ascii=False))


def write_dense(gguf_path: Path, out_dir: Path, progress: Progress | None = None) -> None:
    """Write the dense llama checkpoint (config.json, model.safetensors,
    tokenizer files) for the GGUF into out_dir (an existing, empty folder)."""
    progress = progress or Progress(None)
    progress(0.0, "reading the GGUF")
    weights, meta = load_gguf(gguf_path)
    tensors, embed_bits = dense_tensors(weights, meta)
    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], **base_config(meta, embed_bits)}
    cfg["mlp_bias"] = False
    cfg["attention_bias"] = False
    specs = {k: TensorSpec(tuple(v.shape), tag_of_numpy(v.dtype)) for k, v in tensors.items()}
    write_checkpoint(
        out_dir,
        specs,
        tensors.items(),
        shards=1,
        on_tensor=lambda done, total: progress(0.1 + 0.85 * done / total, "writing the dense model"),
    )
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2))
    write_tokenizer(meta, out_dir)
    progress(1.0, "dense model written")
