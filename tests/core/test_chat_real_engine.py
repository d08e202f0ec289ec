"""The core on the real engine: a retry or an edit prefills only what changed."""

from __future__ import annotations

import pytest

from engine import Engine, GenerationParams
from outlier_tui.core.chat import ChatSession
from outlier_tui.store import ConversationStore


@pytest.fixture
def session(checkpoint_factory, tmp_path):
    engine = Engine()
    engine.load(str(checkpoint_factory("qwen3_moe"))).result()
    store = ConversationStore(tmp_path / "chats.sqlite3")
    yield ChatSession(engine, store, params=GenerationParams(max_tokens=6))
    engine.close()
    store.close()


def _ignore(kind, text):
    pass


def test_retry_and_edit_reuse_the_kv_cache_prefix(session):
    first = session.send("Tell me about disks and caches, please.", _ignore).run()
    second = session.send("And what about SSD read speeds?", _ignore).run()
    full = first.stats.prompt_tokens + first.stats.generation_tokens + second.stats.prompt_tokens
    retried = session.retry(_ignore).run()
    assert retried.status == "complete"
    assert retried.stats.prompt_tokens == 1  # all but the last prompt token came from the cache
    assert retried.stats.tokens == second.stats.tokens  # greedy: the same answer again
    edited = session.edit_last("And what about HDD read speeds?", _ignore).run()
    assert 1 < edited.stats.prompt_tokens < full // 2  # from the edited message on
    assert [m.content for m in session.messages()][-2] == "And what about HDD read speeds?"
    assert len(session.messages()) == 4
