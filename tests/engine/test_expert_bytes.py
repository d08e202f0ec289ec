"""Would we notice reading the wrong expert's bytes? Corrupt one expert on disk:
the output must change at exactly the first step that routes to it."""

import shutil

import mlx.core as mx
import numpy as np
from checkpoints import resident_oracle
from mlx_lm.models.cache import make_prompt_cache

from engine.checkpoint import CheckpointIndex
from engine.loader import load_streamed_model

TOKENS = [ord(c) % 250 for c in "Outlier streams experts; the router picks eight of them!"]


def _step_logits_and_routes(path, row):
    """Feed TOKENS one at a time; per step: logits and which experts of MoE row `row` ran."""
    loaded = load_streamed_model(path, cache_bytes=None)
    cache = make_prompt_cache(loaded.model)
    logits, routes = [], []
    for t in TOKENS:
        before = loaded.telemetry.snapshot()
        out = loaded.model(mx.array([[t]]), cache=cache)[0, -1]
        mx.eval(out)
        after = loaded.telemetry.snapshot()
        used = (after.hits + after.misses - before.hits - before.misses)[row]
        routes.append(set(np.nonzero(used)[0].tolist()))
        logits.append(np.array(out))
    loaded.close()
    return np.stack(logits), routes


def _corrupt_expert(path, layer, expert):
    index = CheckpointIndex.open(path)
    tensor = index.moe_layers[layer].tensors["gate_proj.weight"]
    offset, nbytes = tensor.expert_range(expert)
    with open(tensor.location.file, "r+b") as fh:
        fh.seek(offset)
        data = bytearray(fh.read(nbytes))
        fh.seek(offset)
        fh.write(bytes(b ^ 0x5A for b in data))


def test_corrupting_one_expert_changes_output_exactly_when_routed(checkpoint_factory, tmp_path):
    original = checkpoint_factory("mixtral")
    layer = row = 1
    logits, routes = _step_logits_and_routes(original, row)
    first_use = {}
    for step, experts in enumerate(routes):
        for e in experts:
            first_use.setdefault(e, step)
    # the expert whose first use comes latest: many steps before it must not change
    expert = max(first_use, key=first_use.get)
    t0 = first_use[expert]
    assert t0 > 0

    corrupted = tmp_path / "corrupted"
    shutil.copytree(original, corrupted)
    _corrupt_expert(corrupted, layer, expert)
    bad_logits, bad_routes = _step_logits_and_routes(corrupted, row)

    np.testing.assert_array_equal(bad_logits[:t0], logits[:t0])
    assert not np.array_equal(bad_logits[t0], logits[t0])
    assert bad_routes[: t0 + 1] == routes[: t0 + 1]

    # and the streamed result on the corrupted files is what mlx-lm computes from them
    oracle, _ = resident_oracle(corrupted)
    cache = make_prompt_cache(oracle)
    want = [np.array(oracle(mx.array([[t]]), cache=cache)[0, -1]) for t in TOKENS]
    np.testing.assert_array_equal(bad_logits, np.stack(want))


def test_swapping_two_experts_on_disk_changes_output(checkpoint_factory, tmp_path):
    original = checkpoint_factory("qwen3_moe")
    logits, routes = _step_logits_and_routes(original, 0)
    swapped = tmp_path / "swapped"
    shutil.copytree(original, swapped)
    index = CheckpointIndex.open(swapped)
    a, b = sorted(routes[0])[:1][0], next(e for e in range(8) if e not in routes[0])
    for tensor in index.moe_layers[0].tensors.values():
        (oa, n), (ob, _) = tensor.expert_range(a), tensor.expert_range(b)
        with open(tensor.location.file, "r+b") as fh:
            fh.seek(oa)
            da = fh.read(n)
            fh.seek(ob)
            db = fh.read(n)
            fh.seek(oa)
            fh.write(db)
            fh.seek(ob)
            fh.write(da)
    swapped_logits, _ = _step_logits_and_routes(swapped, 0)
    assert not np.array_equal(swapped_logits[0], logits[0])
