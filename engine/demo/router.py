"""Routers for the upcycled MoE: spherical k-means of each layer's FFN inputs.

Mixtral's router is a bias-free linear map, gates = W x, and a token goes to
the top-k gates. With W's rows set to unit-length centroids c_e, the top-1
expert is argmax_e c_e . x = argmax_e cos(c_e, x) (|x| is the same for every
e), which is exactly the assignment rule of spherical k-means. So clustering
the normalised hidden states of real text and using the centroids as router
rows routes tokens by content: similar tokens (code, numbers, prose in one
language...) go to the same experts, and consecutive tokens often share
experts, as in trained MoE models. Because every expert of a layer computes
the same function, the choice affects only which bytes are read, never the
output.
"""

from __future__ import annotations

import numpy as np

GATE_SCALE = 10.0  # router logits are about 10 x cosine similarity


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def spherical_kmeans(x: np.ndarray, k: int, seed: int, iters: int = 25) -> np.ndarray:
    """Unit centroids [k, d] of the rows of x (k-means++ seeding on cosine distance)."""
    xn = _normalise(x.astype(np.float32))
    n = len(xn)
    if n < k:
        raise ValueError(f"{n} points cannot make {k} clusters")
    rng = np.random.default_rng(seed)
    centroids = np.empty((k, xn.shape[1]), dtype=np.float32)
    centroids[0] = xn[rng.integers(n)]
    best = xn @ centroids[0]
    for i in range(1, k):
        dist = np.maximum(1.0 - best, 0.0).astype(np.float64)
        total = dist.sum()
        j = rng.choice(n, p=dist / total) if total > 0 else rng.integers(n)
        centroids[i] = xn[j]
        best = np.maximum(best, xn @ centroids[i])
    for _ in range(iters):
        sims = xn @ centroids.T
        assign = sims.argmax(axis=1)
        onehot = np.zeros((n, k), dtype=np.float32)
        onehot[np.arange(n), assign] = 1.0
        sums = onehot.T @ xn
        counts = onehot.sum(axis=0)
        new = _normalise(sums)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            # re-seed empty clusters with the points worst served so far
            worst = np.argsort(sims[np.arange(n), assign])[: len(empty)]
            new[empty] = xn[worst]
        if np.allclose(new, centroids, atol=1e-6):
            centroids = new
            break
        centroids = new
    return centroids


def router_weights(x: np.ndarray, experts: int, seed: int) -> np.ndarray:
    """Mixtral gate weight [experts, hidden] (float16) for one layer's FFN inputs x."""
    centroids = spherical_kmeans(x, experts, seed)
    scale = GATE_SCALE / float(np.median(np.linalg.norm(x, axis=-1)))
    return (centroids * scale).astype(np.float16)


def top_k(x: np.ndarray, gate: np.ndarray, k: int) -> np.ndarray:
    """Expert ids [N, k] the router picks for the rows of x."""
    logits = x.astype(np.float32) @ gate.astype(np.float32).T
    return np.argpartition(-logits, kth=k - 1, axis=1)[:, :k]


def routing_stats(x: np.ndarray, gate: np.ndarray, k: int, follows: np.ndarray) -> dict[str, float]:
    """Usage and locality of one layer's routing of the rows of x.

    follows[t] says whether row t is the next token after row t-1 of the same
    text. Returns usage entropy normalised to [0, 1] (1 = every expert used
    equally), the share of experts that got no token, the largest expert's
    share of the routed slots, and the fraction of a token's k experts that
    the previous token also used (chance level: k / E)."""
    experts = gate.shape[0]
    picks = top_k(x, gate, k)
    counts = np.bincount(picks.ravel(), minlength=experts).astype(np.float64)
    p = counts / counts.sum()
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum() / np.log(experts)) if experts > 1 else 1.0
    prev = np.sort(picks[:-1], axis=1)
    cur = np.sort(picks[1:], axis=1)
    shared = (cur[:, :, None] == prev[:, None, :]).any(axis=2).sum(axis=1) / k
    mask = follows[1:]
    reuse = float(shared[mask].mean()) if mask.any() else 0.0
    return {
        "usage_entropy": entropy,
        "unused_experts": float((counts == 0).mean()),
        "max_expert_share": float(p.max()),
        "consecutive_reuse": reuse,
        "chance_reuse": k / experts,
    }
