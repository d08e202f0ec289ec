"""The Engine facade: one thread owns MLX; requests stream events; errors never kill it."""

import threading

import pytest
from oracle import oracle_answer

from engine import Engine, GenerationDone, GenerationFailed, GenerationParams, TextDelta
from engine.checkpoint import CheckpointIndex
from engine.errors import CheckpointError

GREEDY = GenerationParams(max_tokens=12, temperature=0.0)


def _collect(stream):
    events = list(stream)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return text, events[-1]


@pytest.fixture
def engine():
    eng = Engine()
    yield eng
    eng.close()


def _fresh_engine_tokens(path, messages):
    """The greedy answer of a new engine with no conversation history."""
    fresh = Engine()
    try:
        fresh.load(str(path)).result()
        _, done = _collect(fresh.generate(messages, GREEDY))
    finally:
        fresh.close()
    return done.stats.tokens


def _chat_ids(messages):
    return lambda tok: tok.encode(
        tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), add_special_tokens=False
    )


def test_generate_streams_the_oracle_tokens(engine, checkpoint_factory):
    path = checkpoint_factory("qwen3_moe")
    info = engine.load(str(path), cache_bytes=None).result()
    assert info.num_experts == 8 and info.moe_layers == (0, 1, 2)
    messages = [{"role": "user", "content": "Write a haiku about disks."}]
    text, done = _collect(engine.generate(messages, GREEDY))
    assert isinstance(done, GenerationDone) and not done.cancelled
    assert list(done.stats.tokens) == oracle_answer(path, _chat_ids(messages), GREEDY.max_tokens)
    assert done.stats.generation_tokens == len(done.stats.tokens)
    snap = engine.snapshot()
    assert snap.state == "idle" and snap.hits.shape == (3, 8)
    assert snap.misses.sum() > 0 and snap.resident.sum() <= info.cache_slots
    assert snap.cache_bytes <= snap.cache_budget_bytes


def test_follow_up_prefills_only_new_tokens(engine, checkpoint_factory):
    path = checkpoint_factory("mixtral")
    engine.load(str(path)).result()
    first = [{"role": "user", "content": "Hello there, engine."}]
    _, done1 = _collect(engine.generate(first, GREEDY))
    answer = engine._loaded.tokenizer.decode(list(done1.stats.tokens))
    second = first + [{"role": "assistant", "content": answer}, {"role": "user", "content": "More."}]
    _, done2 = _collect(engine.generate(second, GREEDY))
    full = len(
        engine._loaded.tokenizer.encode(
            engine._loaded.tokenizer.apply_chat_template(second, add_generation_prompt=True, tokenize=False),
            add_special_tokens=False,
        )
    )
    assert done2.stats.prompt_tokens < full - done1.stats.prompt_tokens // 2
    # and reusing the cache changes nothing: a fresh engine gives the same answer
    assert _fresh_engine_tokens(path, second) == done2.stats.tokens


def test_cancel_keeps_partial_answer_and_consistent_cache(engine, checkpoint_factory):
    path = checkpoint_factory("mixtral")
    engine.load(str(path)).result()
    messages = [{"role": "user", "content": "Count forever."}]
    stream = engine.generate(messages, GenerationParams(max_tokens=200))
    events = []
    for event in stream:
        events.append(event)
        if len(events) == 3:
            engine.cancel()
    done = events[-1]
    assert isinstance(done, GenerationDone) and done.cancelled
    assert 3 <= done.stats.generation_tokens < 200
    # continuing the conversation after a cancel equals a fresh engine doing the same
    partial = engine._loaded.tokenizer.decode(list(done.stats.tokens))
    follow = messages + [{"role": "assistant", "content": partial}, {"role": "user", "content": "ok"}]
    _, after_cancel = _collect(engine.generate(follow, GREEDY))
    assert after_cancel.stats.tokens == _fresh_engine_tokens(path, follow)


def test_generate_before_load_fails_cleanly(engine):
    _, last = _collect(engine.generate([{"role": "user", "content": "hi"}], GREEDY))
    assert isinstance(last, GenerationFailed) and "No model" in last.message


def test_load_error_then_good_load(engine, checkpoint_factory, tmp_path):
    with pytest.raises(CheckpointError):
        engine.load(str(tmp_path / "missing")).result()
    assert engine.snapshot().state == "error"
    engine.load(str(checkpoint_factory("olmoe"))).result()
    _, done = _collect(engine.generate([{"role": "user", "content": "hi"}], GREEDY))
    assert isinstance(done, GenerationDone)


def test_read_error_mid_answer_then_next_request_succeeds(engine, checkpoint_factory, tmp_path):
    import shutil

    path = tmp_path / "model"
    shutil.copytree(checkpoint_factory("mixtral", shards=2), path)
    info = engine.load(str(path)).result()
    engine.load(str(path), cache_bytes=info.expert_bytes * info.top_k).result()  # every step misses
    index = CheckpointIndex.open(path)
    shard = index.moe_layers[0].tensors["gate_proj.weight"].location.file
    original = shard.read_bytes()
    messages = [{"role": "user", "content": "Tell me a long story."}]
    events = []
    for event in engine.generate(messages, GenerationParams(max_tokens=100)):
        events.append(event)
        if len(events) == 2:
            with open(shard, "r+b") as fh:  # the file shrinks under the reader
                fh.truncate(64)
    last = events[-1]
    assert isinstance(last, GenerationFailed), last
    assert shard.name in last.message and "\n" not in last.message
    assert any(isinstance(e, TextDelta) for e in events)
    with open(shard, "r+b") as fh:  # restore in place (same inode)
        fh.write(original)
    text, done = _collect(engine.generate(messages, GREEDY))
    assert isinstance(done, GenerationDone) and done.stats.generation_tokens > 0


def test_replaced_file_is_refused(engine, checkpoint_factory, tmp_path):
    import shutil

    path = tmp_path / "model"
    shutil.copytree(checkpoint_factory("mixtral"), path)
    engine.load(str(path)).result()
    shard = path / "model.safetensors"
    data = shard.read_bytes()
    shard.unlink()
    shard.write_bytes(data)  # a new inode under the same name
    _, last = _collect(engine.generate([{"role": "user", "content": "hi"}], GREEDY))
    assert isinstance(last, GenerationFailed) and "replaced" in last.message


def test_snapshot_is_safe_from_other_threads(engine, checkpoint_factory):
    engine.load(str(checkpoint_factory("mixtral"))).result()
    stop = threading.Event()
    snaps = []

    def poll():
        while not stop.is_set():
            snaps.append(engine.snapshot())

    poller = threading.Thread(target=poll)
    poller.start()
    _, done = _collect(engine.generate([{"role": "user", "content": "hi"}], GREEDY))
    stop.set()
    poller.join()
    assert isinstance(done, GenerationDone) and snaps
    steps = [s.step for s in snaps]
    assert steps == sorted(steps)
