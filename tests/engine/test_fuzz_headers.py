"""A bounded run of the checkpoint fuzzer (tests/fuzz_checkpoint.py; long runs: its --cases).

Every damaged folder must be refused at load with one of the project's own errors,
or load and generate exactly what mlx-lm generates from it; one that loads and then
fails mid-answer is a failure (the README promises the checks come before any tensor
is read). A per-case timeout turns a hang into a failure instead of a stuck suite.
"""

from collections import Counter

from fuzz_checkpoint import run_cases

CASES = 1500


def test_damaged_headers_index_and_config_end_in_our_errors_or_correct_answers(checkpoint_factory):
    outcomes = run_cases(checkpoint_factory("mixtral", shards=2), CASES, seed=0, timeout=30.0)
    bugs = [o for o in outcomes if o.is_bug]
    assert not bugs, "\n".join(f"seed {o.seed}: {o.target} {o.mutation} -> {o.result} {o.detail}" for o in bugs[:10])
    results = Counter(o.result for o in outcomes)
    # Not vacuous: most damage is refused, some is harmless and answers correctly.
    assert results["rejected:CheckpointError"] > CASES // 2 and results["ok"] > 0
    assert {o.target for o in outcomes} >= {
        "config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
    }


def test_fuzzer_leaves_the_checkpoint_untouched(checkpoint_factory, tmp_path):
    base = checkpoint_factory("mixtral", shards=2)
    before = {p.name: p.read_bytes() for p in base.iterdir()}
    run_cases(base, 20, seed=7)
    assert {p.name: p.read_bytes() for p in base.iterdir()} == before


def test_a_folder_that_loads_then_fails_mid_answer_counts_as_a_bug(checkpoint_factory, monkeypatch):
    """Our own error after a good load is still a failure of the load's checks, not a pass."""
    import engine.generation
    from engine.errors import OutlierError

    def fails_mid_answer(*args, **kwargs):
        raise OutlierError("a tensor turned out unreadable")

    monkeypatch.setattr(engine.generation, "generate", fails_mid_answer)
    outcomes = run_cases(checkpoint_factory("mixtral", shards=2), 40, seed=0)
    loaded = [o for o in outcomes if not o.result.startswith("rejected:")]
    assert loaded and all(o.is_bug and o.result == "bug:LateRejection" for o in loaded)
