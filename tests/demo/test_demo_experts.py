"""Every expert of the demo MoE has its own bytes on disk, each is an exact
permutation of the dense FFN's quantized values, and the engine really uses
the bytes of the expert the router picked."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from demo_helpers import chat_ids, greedy, tensor_ranges

PROJS = ("gate_proj", "up_proj", "down_proj")


def _switch(layer: int, proj: str, part: str) -> str:
    return f"model.layers.{layer}.block_sparse_moe.switch_mlp.{proj}.{part}"


def test_experts_of_every_layer_differ_in_bytes(demo_moe):
    info = json.loads((demo_moe / "demo_info.json").read_text())
    ranges = tensor_ranges(demo_moe)
    experts = info["experts"]
    for layer in range(info["layers"]):
        for proj in PROJS:
            file, offset, nbytes, shape = ranges[_switch(layer, proj, "weight")]
            assert shape[0] == experts
            per_expert = nbytes // experts
            with open(file, "rb") as f:
                digests = set()
                for e in range(experts):
                    f.seek(offset + e * per_expert)
                    digests.add(hashlib.sha256(f.read(per_expert)).digest())
            assert len(digests) == experts, (layer, proj)


def test_experts_are_exact_permutations_of_the_dense_ffn(dense_dir, demo_moe):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    from engine.demo.build import PERMUTATION_SEED
    from engine.demo.qpack import dequantize
    from engine.demo.upcycle import expert_permutation

    dense = load_file(str(dense_dir / "model.safetensors"))
    ranges = tensor_ranges(demo_moe)
    layer = 5

    def moe_tensor(name):
        with safe_open(str(ranges[name][0]), "np") as f:
            return f.get_tensor(name)

    def dq(parts: dict) -> np.ndarray:
        return dequantize(parts["weight"], parts["scales"], parts["biases"], 4)

    dense_w = {
        p: dq({k: dense[f"model.layers.{layer}.mlp.{p}.{k}"] for k in ("weight", "scales", "biases")}) for p in PROJS
    }
    stacked = {p: {k: moe_tensor(_switch(layer, p, k)) for k in ("weight", "scales", "biases")} for p in PROJS}
    experts = stacked["gate_proj"]["weight"].shape[0]
    hidden = dense_w["gate_proj"].shape[0]
    for e in range(experts):
        perm, gperm = expert_permutation(PERMUTATION_SEED, layer, e, hidden, 32)
        assert sorted(perm) == list(range(hidden))
        got = {p: dq({k: v[e] for k, v in stacked[p].items()}) for p in PROJS}
        # gate/up: whole rows move; down: columns move by whole groups and within groups
        np.testing.assert_array_equal(got["gate_proj"], dense_w["gate_proj"][perm])
        np.testing.assert_array_equal(got["up_proj"], dense_w["up_proj"][perm])
        np.testing.assert_array_equal(got["down_proj"], dense_w["down_proj"][:, perm])
        np.testing.assert_array_equal(
            stacked["down_proj"]["scales"][e], dense[f"model.layers.{layer}.mlp.down_proj.scales"][:, gperm]
        )
        assert not np.array_equal(perm // 32, np.sort(perm) // 32)  # groups really moved


def _swap_expert_bytes(folder, name: str, a: int, b: int) -> None:
    file, offset, nbytes, shape = tensor_ranges(folder)[name]
    per = nbytes // shape[0]
    fd = os.open(file, os.O_RDWR)
    try:
        x = os.pread(fd, per, offset + a * per)
        y = os.pread(fd, per, offset + b * per)
        assert x != y
        os.pwrite(fd, y, offset + a * per)
        os.pwrite(fd, x, offset + b * per)
    finally:
        os.close(fd)


def _streamed_logits(path, prompt: str, steps: int = 2):
    from engine.loader import load_streamed_model

    info = json.loads((path / "demo_info.json").read_text())
    loaded = load_streamed_model(path, cache_bytes=info["total_expert_bytes"] // 4)
    try:
        return greedy(loaded.model, chat_ids(loaded.tokenizer, prompt), steps)
    finally:
        loaded.close()


@pytest.mark.parametrize("proj", ["down_proj"])
def test_swapping_two_experts_bytes_on_disk_changes_the_output(demo_moe, tmp_path, proj):
    """Swap only one projection of experts 0 and 1 in every layer: each expert
    now pairs its gate/up with the other's down, whose hidden units are in a
    different order. If the engine read the right bytes for the expert the
    router picked, the answer must change."""
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for item in demo_moe.iterdir():
        if item.suffix == ".safetensors":
            shutil.copyfile(item, swapped / item.name)
        else:
            (swapped / item.name).symlink_to(item)
    layers = json.loads((demo_moe / "demo_info.json").read_text())["layers"]
    for layer in range(layers):
        for part in ("weight", "scales", "biases"):
            _swap_expert_bytes(swapped, _switch(layer, proj, part), 0, 1)

    prompt = "What is the capital of France?"
    _, original = _streamed_logits(demo_moe, prompt)
    _, changed = _streamed_logits(swapped, prompt)
    assert np.abs(original - changed).max() > 1.0
