"""The dense model's FFN-input hidden states over a text corpus, computed with
a plain numpy forward pass (float32, BLAS GEMMs): the routers are clustered
from them. numpy's bundled BLAS makes this pass fast on any CPU, where MLX's
CPU quantized kernels would take minutes for a few thousand tokens.
"""

from __future__ import annotations

import numpy as np

from engine.demo.qpack import dequantize


class NumpyLlama:
    """A float32 numpy llama forward over the dense checkpoint's tensors
    (mlx-lm names), returning each layer's post-attention-norm hidden states."""

    def __init__(self, tensors: dict[str, np.ndarray], config: dict):
        self.cfg = config
        self.t = tensors
        q = config["quantization"]
        self.embed_bits = q.get("model.embed_tokens", q)["bits"]
        self._cache: dict[str, np.ndarray] = {}

    def _w(self, prefix: str) -> np.ndarray:
        """Dequantized float32 weight, transposed for x @ W."""
        if prefix not in self._cache:
            t = self.t
            w = dequantize(t[f"{prefix}.weight"], t[f"{prefix}.scales"], t[f"{prefix}.biases"], 4)
            self._cache[prefix] = np.ascontiguousarray(w.T)
        return self._cache[prefix]

    def embed(self, ids: np.ndarray) -> np.ndarray:
        t = self.t
        return dequantize(
            t["model.embed_tokens.weight"][ids],
            t["model.embed_tokens.scales"][ids],
            t["model.embed_tokens.biases"][ids],
            self.embed_bits,
        )

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        eps = self.cfg["rms_norm_eps"]
        w = self.t[name].astype(np.float32)
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    def _rope(self, x: np.ndarray) -> np.ndarray:
        # x: [heads, L, head_dim]; HF / mlx-lm (non-traditional) rotary embedding
        L, hd = x.shape[1], x.shape[2]
        inv = self.cfg["rope_theta"] ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        ang = np.arange(L, dtype=np.float64)[:, None] * inv[None, :]
        cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)

    def ffn_inputs(self, ids: list[int]) -> list[np.ndarray]:
        """For one token sequence: per layer, the FFN input [L, hidden] (what the
        MoE router of that layer sees)."""
        cfg = self.cfg
        nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        ids_a = np.asarray(ids, dtype=np.int64)
        L = len(ids_a)
        h = self.embed(ids_a)
        mask = np.triu(np.full((L, L), -np.inf, dtype=np.float32), k=1)
        out = []
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}"
            x = self._norm(h, f"{p}.input_layernorm.weight")
            q = (x @ self._w(f"{p}.self_attn.q_proj")).reshape(L, nh, hd).transpose(1, 0, 2)
            k = (x @ self._w(f"{p}.self_attn.k_proj")).reshape(L, nkv, hd).transpose(1, 0, 2)
            v = (x @ self._w(f"{p}.self_attn.v_proj")).reshape(L, nkv, hd).transpose(1, 0, 2)
            q, k = self._rope(q), self._rope(k)
            rep = nh // nkv
            k = np.repeat(k, rep, axis=0)
            v = np.repeat(v, rep, axis=0)
            s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            a = (s @ v).transpose(1, 0, 2).reshape(L, nh * hd)
            h = h + a @ self._w(f"{p}.self_attn.o_proj")
            x = self._norm(h, f"{p}.post_attention_layernorm.weight")
            out.append(x)
            g = x @ self._w(f"{p}.mlp.gate_proj")
            u = x @ self._w(f"{p}.mlp.up_proj")
            h = h + (g / (1.0 + np.exp(-g)) * u) @ self._w(f"{p}.mlp.down_proj")
        self.final_hidden = self._norm(h, "model.norm.weight")
        return out

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """Tied-embedding output head for final hidden states [L, hidden]."""
        t = self.t
        emb = dequantize(
            t["model.embed_tokens.weight"], t["model.embed_tokens.scales"],
            t["model.embed_tokens.biases"], self.embed_bits,
        )
        return hidden @ emb.T


def corpus_features(model: NumpyLlama, sequences: list[list[int]], progress=None) -> list[np.ndarray]:
    """Per layer, the FFN inputs of every token of every sequence, stacked [N, hidden]."""
    per_layer: list[list[np.ndarray]] = [[] for _ in range(model.cfg["num_hidden_layers"])]
    for n, ids in enumerate(sequences):
        for i, x in enumerate(model.ffn_inputs(ids)):
            per_layer[i].append(x)
        if progress is not None:
            progress((n + 1) / len(sequences), "computing hidden states for the routers")
    return [np.concatenate(xs, axis=0) for xs in per_layer]
