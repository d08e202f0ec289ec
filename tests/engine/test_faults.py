"""Faults while an answer streams: a shard truncated, replaced or deleted under the
engine, and EIO from the disk. Each ends in one clear line or a correct answer, and
the engine answers correctly again once the fault is gone."""

import errno
import os
import shutil
import threading

import pytest
from oracle import oracle_answer

from engine.api import GenerationParams
from engine.errors import ExpertReadError, OutlierError
from engine.generation import PromptCacheStore, generate
from engine.loader import load_streamed_model

PROMPT = "Streaming experts from the disk, token after token."
PARAMS = GenerationParams(max_tokens=24, chat_template=False)


@pytest.fixture
def model(checkpoint_factory, tmp_path):
    """A private copy of a tiny checkpoint, loaded with the smallest budget (misses every token)."""
    path = tmp_path / "model"
    shutil.copytree(checkpoint_factory("mixtral"), path)
    probe = load_streamed_model(path)
    minimum = probe.info.expert_bytes * probe.info.top_k
    probe.close()
    loaded = load_streamed_model(path, cache_bytes=minimum)
    yield path, loaded
    loaded.close()


def _answer(loaded, conv=None, on_first_token=None):
    fired = []

    def emit(text, token, kind):
        if on_first_token and not fired:
            fired.append(True)
            on_first_token()

    return generate(
        loaded, conv or PromptCacheStore(), [{"role": "user", "content": PROMPT}], PARAMS, threading.Event(), emit
    )


def _expected(path):
    return oracle_answer(path, lambda tok: tok.encode(PROMPT), PARAMS.max_tokens)


def test_shard_truncated_mid_answer_is_one_line(model):
    path, loaded = model
    shard = path / "model.safetensors"
    data = shard.read_bytes()

    def truncate():
        with open(shard, "r+b") as fh:  # in place: the engine's open descriptor sees it
            fh.truncate(len(data) // 3)

    with pytest.raises(ExpertReadError) as exc:
        _answer(loaded, on_first_token=truncate)
    message = str(exc.value)
    assert "\n" not in message and "model.safetensors" in message and "reload" in message
    shard.write_bytes(data)  # restored in place: the same engine answers correctly again
    stats, _ = _answer(loaded)
    assert list(stats.tokens) == _expected(path)


def test_shard_replaced_mid_answer_finishes_then_next_request_says_reload(model):
    path, loaded = model
    shard = path / "model.safetensors"
    expected = _expected(path)

    def replace():
        tmp = path / "replacement.tmp"
        tmp.write_bytes(b"\0" * shard.stat().st_size)
        os.replace(tmp, shard)  # a new file: the engine keeps reading the one it opened

    stats, _ = _answer(loaded, on_first_token=replace)
    assert list(stats.tokens) == expected
    with pytest.raises(ExpertReadError, match="replaced on disk.*reload the model"):
        _answer(loaded)


def test_shard_deleted_mid_answer_finishes_then_next_request_says_restore(model):
    path, loaded = model
    shard = path / "model.safetensors"
    expected = _expected(path)
    stats, _ = _answer(loaded, on_first_token=shard.unlink)
    assert list(stats.tokens) == expected
    with pytest.raises(ExpertReadError, match="model.safetensors is gone"):
        _answer(loaded)


def test_eio_from_the_disk_is_one_line_and_the_cache_is_not_poisoned(model, monkeypatch):
    path, loaded = model
    real_preadv = os.preadv
    calls = {"n": 0}

    def failing_preadv(fd, buffers, offset):
        calls["n"] += 1
        if calls["n"] > 3:  # a few reads succeed, then the disk fails
            raise OSError(errno.EIO, "Input/output error")
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", failing_preadv)
    with pytest.raises(OutlierError) as exc:
        _answer(loaded)
    assert "Input/output error" in str(exc.value) and "\n" not in str(exc.value)
    monkeypatch.setattr(os, "preadv", real_preadv)
    # Slots whose read failed must not count as holding their expert.
    stats, _ = _answer(loaded)
    assert list(stats.tokens) == _expected(path)
