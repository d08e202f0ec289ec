"""Dense llama checkpoint → Mixtral-format MoE whose experts are permuted
copies of each layer's FFN.

Expert e of layer l is the FFN with its hidden units reordered by a
permutation P(l, e). Such a reordering does not change the FFN's function:
    down[:, P] @ (silu(gate[P] x) * up[P] x) = down @ (silu(gate x) * up x)
(up to the order of the float sums). Every tensor stays exactly the GGUF's
quantized numbers:

- gate_proj and up_proj are quantized along their input (hidden size), so
  permuting their output rows moves whole rows with their scales and biases.
- down_proj is quantized along the FFN hidden units in groups of 32. P moves
  whole groups (a permutation of the groups) and permutes values inside each
  group (the packed 4-bit nibbles are repacked). A group keeps the same set of
  values, and affine quantization per group (w = scale * q + bias) does not
  depend on the order inside the group, so each group's scale and bias move
  with it unchanged.

Mixtral normalises the top-k softmax weights to sum to 1, so the sum of k
identical functions weighted this way is the dense FFN itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from engine.demo.qpack import pack, unpack
from engine.dtypes import TensorSpec, tag_of_numpy

PROJS = ("gate_proj", "up_proj", "down_proj")
PARTS = ("weight", "scales", "biases")


def expert_permutation(seed: int, layer: int, expert: int, hidden: int, group: int) -> tuple[np.ndarray, np.ndarray]:
    """(unit permutation [hidden], group permutation [hidden // group]) of one
    expert: unit j of the expert is unit perm[j] of the dense FFN, and its
    quantization group g is the dense group gperm[g]."""
    rng = np.random.default_rng([seed, layer, expert])
    groups = hidden // group
    gperm = rng.permutation(groups)
    within = rng.permuted(np.tile(np.arange(group), (groups, 1)), axis=1)
    perm = (gperm[:, None] * group + within).reshape(-1)
    return perm, gperm


def layer_experts(
    mlp: dict[str, np.ndarray], experts: int, seed: int, layer: int, group: int = 32
) -> dict[str, np.ndarray]:
    """Stacked expert tensors [E, out, in_packed] of one layer (mlx-community
    switch_mlp layout) from its dense FFN (keys like 'gate_proj.weight')."""
    hidden = mlp["gate_proj.weight"].shape[0]
    perms, gperms = zip(*(expert_permutation(seed, layer, e, hidden, group) for e in range(experts)))
    perms_a = np.stack(perms)  # [E, hidden]
    gperms_a = np.stack(gperms)  # [E, hidden // group]
    out: dict[str, np.ndarray] = {}
    for proj in ("gate_proj", "up_proj"):
        for part in PARTS:
            out[f"{proj}.{part}"] = mlp[f"{proj}.{part}"][perms_a]  # rows
    w = mlp["down_proj.weight"]
    bits = w.shape[1] * 32 // hidden
    nibbles = unpack(w, bits)  # [d_model, hidden]
    moved = nibbles[:, perms_a]  # [d_model, E, hidden]
    out["down_proj.weight"] = np.ascontiguousarray(pack(moved, bits).transpose(1, 0, 2))
    for part in ("scales", "biases"):
        out[f"down_proj.{part}"] = np.ascontiguousarray(mlp[f"down_proj.{part}"][:, gperms_a].transpose(1, 0, 2))
    return out


def _layer_names(i: int) -> tuple[list[str], list[str]]:
    """(names copied from the dense layer, MoE-only names) in checkpoint order."""
    pre = f"model.layers.{i}"
    copied = [f"{pre}.input_layernorm.weight"]
    copied += [f"{pre}.self_attn.{p}.{k}" for p in ("q_proj", "k_proj", "v_proj", "o_proj") for k in PARTS]
    copied += [f"{pre}.post_attention_layernorm.weight"]
    moe = [f"{pre}.block_sparse_moe.gate.weight"]
    moe += [f"{pre}.block_sparse_moe.switch_mlp.{p}.{k}" for p in PROJS for k in PARTS]
    return copied, moe


def moe_specs(dense: dict[str, np.ndarray], layers: int, experts: int) -> dict[str, TensorSpec]:
    """Names, dtypes and shapes of the MoE checkpoint, in writing order."""

    def copy(name: str) -> TensorSpec:
        return TensorSpec(tuple(dense[name].shape), tag_of_numpy(dense[name].dtype))

    specs = {f"model.embed_tokens.{k}": copy(f"model.embed_tokens.{k}") for k in PARTS}
    hidden_size = dense["model.norm.weight"].shape[0]
    for i in range(layers):
        copied, moe = _layer_names(i)
        specs.update({n: copy(n) for n in copied})
        specs[moe[0]] = TensorSpec((experts, hidden_size), "F16")
        for name in moe[1:]:
            proj_part = ".".join(name.split(".")[-2:])
            src = dense[f"model.layers.{i}.mlp.{proj_part}"]
            specs[name] = TensorSpec((experts, *src.shape), tag_of_numpy(src.dtype))
    specs["model.norm.weight"] = copy("model.norm.weight")
    return specs


def moe_tensors(
    dense: dict[str, np.ndarray],
    routers: list[np.ndarray],
    experts: int,
    seed: int,
) -> Iterator[tuple[str, np.ndarray]]:
    """The MoE checkpoint's tensors, one at a time, in moe_specs order."""
    for k in PARTS:
        yield f"model.embed_tokens.{k}", dense[f"model.embed_tokens.{k}"]
    for i, gate in enumerate(routers):
        copied, moe = _layer_names(i)
        for n in copied:
            yield n, dense[n]
        yield moe[0], gate
        mlp = {f"{p}.{k}": dense[f"model.layers.{i}.mlp.{p}.{k}"] for p in PROJS for k in PARTS}
        stacked = layer_experts(mlp, experts, seed, i)
        for name in moe[1:]:
            yield name, stacked[".".join(name.split(".")[-2:])]
    yield "model.norm.weight", dense["model.norm.weight"]


def expert_bytes(dense: dict[str, np.ndarray]) -> int:
    """Bytes of one expert (all three projections) on disk."""
    return sum(dense[f"model.layers.0.mlp.{p}.{k}"].nbytes for p in PROJS for k in PARTS)


def shard_count(total_bytes: int, target: int = 1536 << 20) -> int:
    return max(1, math.ceil(total_bytes / target))
