"""The dense model's FFN-input hidden states over a text corpus, computed with
a plain numpy forward pass (float32, BLAS GEMMs): the routers are clustered
from them. numpy's bundled BLAS makes this pass fast on any CPU, where MLX's
CPU quantized kernels would take minutes for a few thousand tokens.
"""

from __future__ import annotations

import itertools

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

    def ffn_inputs(self, sequences: list[list[int]], progress=None) -> list[np.ndarray]:
        """Per layer, the FFN inputs [N, hidden] (what that layer's MoE router
        sees) of every token of every sequence, rows in sequence order. The
        projections run on all tokens at once (large, efficient GEMMs); only
        attention runs per sequence."""
        cfg = self.cfg
        nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        lengths = [len(s) for s in sequences]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        h = self.embed(np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]))
        rope = {n: self._rope_tables(n, hd) for n in set(lengths)}
        masks = {n: self._causal_mask(n) for n in set(lengths)}
        layers = cfg["num_hidden_layers"]
        out = []
        for i in range(layers):
            p = f"model.layers.{i}"
            x = self._norm(h, f"{p}.input_layernorm.weight")
            q = x @ self._w(f"{p}.self_attn.q_proj")
            k = x @ self._w(f"{p}.self_attn.k_proj")
            v = x @ self._w(f"{p}.self_attn.v_proj")
            a = np.empty_like(q)
            for b0, b1 in itertools.pairwise(bounds):
                n = b1 - b0
                a[b0:b1] = self._attention(q[b0:b1], k[b0:b1], v[b0:b1], nh, nkv, hd, rope[n], masks[n])
            h = h + a @ self._w(f"{p}.self_attn.o_proj")
            x = self._norm(h, f"{p}.post_attention_layernorm.weight")
            out.append(x)
            g = x @ self._w(f"{p}.mlp.gate_proj")
            u = x @ self._w(f"{p}.mlp.up_proj")
            h = h + (g / (1.0 + np.exp(-g)) * u) @ self._w(f"{p}.mlp.down_proj")
            if progress is not None:
                progress((i + 1) / layers, "computing hidden states for the routers")
        self.final_hidden = self._norm(h, "model.norm.weight")
        return out

    def _rope_tables(self, length: int, hd: int) -> tuple[np.ndarray, np.ndarray]:
        inv = self.cfg["rope_theta"] ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        ang = np.arange(length, dtype=np.float64)[:, None] * inv[None, :]
        return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)

    @staticmethod
    def _causal_mask(length: int) -> np.ndarray:
        return np.triu(np.full((length, length), -np.inf, dtype=np.float32), k=1)

    @staticmethod
    def _attention(q, k, v, nh, nkv, hd, rope, mask) -> np.ndarray:
        """Causal grouped-query attention of one sequence (q [L, nh*hd], k and v
        [L, nkv*hd]), with HF-style (non-traditional) rotary embeddings. The
        query heads sharing a kv head are stacked, so each kv head needs two
        GEMMs on contiguous operands (numpy only uses BLAS for those)."""
        L = q.shape[0]
        cos, sin = rope
        rep, half = nh // nkv, hd // 2

        def rot(x):  # [L, heads, hd]
            x1, x2 = x[..., :half], x[..., half:]
            c, s = cos[:, None, :], sin[:, None, :]
            return np.concatenate([x1 * c - x2 * s, x1 * s + x2 * c], axis=-1)

        q = rot(q.reshape(L, nh, hd))
        k = rot(k.reshape(L, nkv, hd))
        qg = np.ascontiguousarray(q.reshape(L, nkv, rep, hd).transpose(1, 2, 0, 3)).reshape(nkv, rep * L, hd)
        kt = np.ascontiguousarray(k.transpose(1, 2, 0))  # [nkv, hd, L]
        s = (qg @ kt).reshape(nkv, rep, L, L)
        s *= np.float32(1.0 / np.sqrt(hd))
        s += mask
        s -= s.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        vv = np.ascontiguousarray(v.reshape(L, nkv, hd).transpose(1, 0, 2))  # [nkv, L, hd]
        o = s.reshape(nkv, rep * L, L) @ vv
        return o.reshape(nkv, rep, L, hd).transpose(2, 0, 1, 3).reshape(L, nh * hd)

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """Tied-embedding output head for final hidden states [L, hidden]."""
        t = self.t
        emb = dequantize(
            t["model.embed_tokens.weight"],
            t["model.embed_tokens.scales"],
            t["model.embed_tokens.biases"],
            self.embed_bits,
        )
        return hidden @ emb.T


def corpus_features(model: NumpyLlama, sequences: list[list[int]], progress=None) -> list[np.ndarray]:
    """Per layer, the FFN inputs of every token of every sequence, stacked [N, hidden]."""
    return model.ffn_inputs(sequences, progress)
