"""`outlier bench --replay`: every policy replayed through the engine's own cache on a routing
trace; Belady bounds them all, the layer order defeats LRU, and bad traces get one clear line."""

import json

import numpy as np
import pytest

from engine.cache_policy import LRUPolicy
from outlier_tui.bench import optimal, prefetch_replay, replay
from outlier_tui.cli import main


def _write(path, experts, offsets):
    np.savez(path, experts=np.asarray(experts, dtype=np.int8), offsets=np.asarray(offsets, dtype=np.int64))
    return path


def _random_routing(tokens=60, layers=4, experts=16, k=2, prompts=3, seed=0):
    rng = np.random.default_rng(seed)
    hot = rng.integers(experts, size=(layers, 4))  # some reuse, as real routing has
    rows = np.empty((tokens, layers, k), dtype=np.int64)
    for t in range(tokens):
        for layer in range(layers):
            pool = hot[layer] if rng.random() < 0.6 else np.arange(experts)
            rows[t, layer] = (
                rng.choice(np.unique(pool), size=k, replace=False)
                if len(np.unique(pool)) >= k
                else (rng.choice(experts, size=k, replace=False))
            )
    cuts = np.linspace(0, tokens, prompts + 1).astype(np.int64)
    return replay.Routing(rows, cuts)


@pytest.mark.parametrize("slots", [2, 5, 12, 30])
def test_belady_misses_least_and_counts_are_the_traces(slots):
    routing = _random_routing()
    got = {name: replay.replay(routing, slots, name, cold=False) for name in replay.NAMES}
    accesses = sum(len(c) for tok in replay.token_calls(routing.experts) for c in tok)
    misses = {name: sum(c.accesses) - sum(c.hits) for name, c in got.items()}
    assert all(sum(c.accesses) == accesses for c in got.values())
    assert misses["belady"] == min(misses.values())
    # the replay's LRU is the bench's exact replay of the engine's LRU (optimal.replay)
    flat = [optimal.Call(c, False) for tok in replay.token_calls(routing.experts) for c in tok]
    assert sum(got["lru"].hits) == optimal.replay(flat, slots, LRUPolicy()).hits


def test_cold_prompts_start_empty():
    one = [[[0, 1], [2, 3]]] * 3  # 3 tokens, 2 layers, top-2: 4 distinct experts
    routing = replay.Routing(np.array(one * 2), np.array([0, 3, 6]))  # the same prompt twice
    session = replay.replay(routing, 8, "lru", cold=False)
    cold = replay.replay(routing, 8, "lru", cold=True)
    assert sum(session.accesses) - sum(session.hits) == 4  # read once for the session
    assert sum(cold.accesses) - sum(cold.hits) == 8  # once per prompt
    assert session.tokens == [3, 3]  # split at the prompt boundary in the middle


def test_the_layer_order_defeats_lru_below_one_tokens_experts():
    """Cycling through the layers with fewer slots than a token's experts, LRU evicts exactly
    the experts the next call needs: it never hits. The default knows the order."""
    rng = np.random.default_rng(1)
    experts = np.stack([np.stack([rng.permutation(8)[:2] for _ in range(6)]) for _ in range(200)])
    routing = replay.Routing(experts, np.array([0, 200]))
    lru = replay.replay(routing, 8, "lru", cold=False)
    default = replay.replay(routing, 8, "default", cold=False)
    assert sum(lru.hits) == 0
    assert sum(default.hits) > 0.05 * sum(default.accesses)


def test_cli_replay_writes_every_policy_per_budget(tmp_path, capsys):
    routing = _random_routing(tokens=40)
    trace = _write(tmp_path / "t.npz", routing.experts, routing.offsets)
    out = tmp_path / "r.json"
    assert main(["bench", "--replay", str(trace), "--budgets", "10", "50", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [b["percent"] for b in result["budgets"]] == [10.0, 50.0]
    for b in result["budgets"]:
        for name in ("default", "lru", "belady", replay.ORACLE):
            figures = b["policies"][name]
            assert 0 <= figures["hit_rate"] <= 1 and figures["misses_per_token"] >= 0
            assert len(figures["halves"]) == 2
            assert ("hit_rate" in figures["cold"]) if name in replay.COLD else figures["cold"] is None
        best = min(p["misses_per_token"] for p in b["policies"].values())
        assert b["policies"]["belady"]["misses_per_token"] == best
    assert "| default |" in capsys.readouterr().out
    prefetch = result["prefetch"]
    assert set(prefetch["predictors"]) == set(prefetch_replay.PREDICTORS)
    for p in prefetch["predictors"].values():
        assert 0 <= p["precision"] <= 1 and 0 <= p["recall"] <= 1
        assert p["prefetch_used_per_token"] <= p["prefetch_issued_per_token"]


def test_a_stopped_replay_resumes_from_its_finished_replays(tmp_path, monkeypatch):
    """The whole trace takes hours: each finished replay is kept as it ends, and a rerun runs
    only the rest, with the same figures as one uninterrupted run."""
    routing = _random_routing(tokens=40)
    done = tmp_path / "r.json.partial"
    whole = replay.run(routing, [10.0, 50.0])
    real_job, ran = replay._job, []

    def stop_after_three(args):
        if len(ran) == 3:
            raise KeyboardInterrupt
        ran.append(args[1:])
        return real_job(args)

    monkeypatch.setattr(replay, "_job", stop_after_three)
    with pytest.raises(KeyboardInterrupt):
        replay.run(routing, [10.0, 50.0], done_file=done)
    assert len(done.read_text().splitlines()) == 3
    with done.open("a") as f:
        f.write('{"task": [10.0, "lru"')  # torn by the stop: skipped
    ran.clear()
    monkeypatch.setattr(replay, "_job", lambda args: ran.append(args[1:]) or real_job(args))
    resumed = replay.run(routing, [10.0, 50.0], done_file=done)
    tasks = sum(1 + (name in replay.COLD) for name in replay.NAMES) * 2
    assert len(ran) == tasks - 3
    assert resumed == whole
    other = _random_routing(tokens=60)  # a different trace does not take these
    ran.clear()
    replay.run(other, [10.0], names=["default", "lru"], done_file=done)
    assert len(ran) == 4  # each a session and cold prompts


def test_prefetch_predictors_against_a_counted_reference():
    """Layer 1 always follows layer 0's expert e with expert e + 1: co-activation learns it on
    the first half and guesses layer 1 exactly on the second; previous-token is right only
    where the token repeats its predecessor."""
    rng = np.random.default_rng(2)
    first = rng.integers(0, 7, size=200)
    experts = np.stack([first, first + 1], axis=1)[:, :, None]  # top-1, 2 layers
    routing = replay.Routing(experts, np.array([0, 100, 200]))
    result = prefetch_replay.run(routing, budget=50.0, guess_count=1)
    co = result["predictors"]["co-activation"]
    assert co["precision"] == co["recall"] == 1.0
    assert co["misses_per_token"] <= result["no_prefetch"]["misses_per_token"]
    prev = result["predictors"]["previous-token"]
    repeats = float(np.mean(first[100:] == first[99:-1]))
    assert prev["recall"] == pytest.approx(repeats)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a zip", "not an .npz"),
        (None, "no 'experts'"),
    ],
)
def test_bad_trace_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.npz"
    if content is None:
        np.savez(path, other=np.zeros(3))
    else:
        path.write_bytes(content)
    assert main(["bench", "--replay", str(path)]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_offsets_must_cover_the_trace(tmp_path):
    path = _write(tmp_path / "t.npz", np.zeros((4, 2, 2)), [0, 3])
    with pytest.raises(replay.TraceError, match="offsets"):
        replay.load_routing(path)


def test_head_keeps_whole_prompts():
    routing = replay.Routing(np.zeros((10, 1, 1), dtype=np.int64), np.array([0, 3, 7, 10]))
    assert routing.head(8).tokens == 7 and routing.head(1).tokens == 3


def test_record_writes_the_engines_decode_routing(checkpoint_factory, tmp_path):
    path = checkpoint_factory("mixtral")
    out = tmp_path / "routing.npz"
    routing = replay.record(str(path), tokens=6, out=out)
    again = replay.load_routing(out)
    assert again.tokens == routing.tokens >= 4 and again.experts.shape[2] == 2
    assert (again.experts == routing.experts).all()
    slots = routing.experts.shape[2] + 1
    misses = {n: sum(c.accesses) - sum(c.hits) for n in replay.NAMES for c in [replay.replay(again, slots, n, False)]}
    assert misses["belady"] == min(misses.values())
