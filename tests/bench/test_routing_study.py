"""The routing study end to end on a tiny Mixtral: the recorded routing replays, no policy
misses less than Belady, and none less than the compulsory misses."""

import json

import pytest

from outlier_tui.bench import routing_study


def test_record_and_replay_bound_every_policy(checkpoint_factory, tmp_path):
    path = checkpoint_factory("mixtral")
    out = tmp_path / "routing.json"
    routing_study.record(str(path), tokens=10, long_prompt=False, path=str(out))
    data = json.loads(out.read_text())
    layers = 1 + max(layer for layer, _ in data["decode"])
    experts = len(data["decode"][0][1])
    assert data["prompt"] and len(data["decode"]) % layers == 0
    calls = routing_study.load_calls(data, decode_tokens=8)
    floor = routing_study.compulsory_misses(calls)
    slots = experts + 2  # the largest call (a prompt's, up to every expert of a layer) fits
    assert slots < layers * experts  # and the cache must evict
    misses = {
        name: routing_study.replay(calls, slots, policy)[1]
        for name, policy in routing_study.candidates(calls, slots, layers, experts)
    }
    optimal = misses.pop("Belady (offline optimum)")
    assert floor <= optimal <= min(misses.values())
    accesses, _ = routing_study.replay(calls, slots, routing_study.LRU())
    assert accesses == sum(len(c.experts) for c in calls if c.prompt_top_k is None)
    with pytest.raises(ValueError, match="more than 1 slots"):
        routing_study.replay(calls, 1, routing_study.LRU())
