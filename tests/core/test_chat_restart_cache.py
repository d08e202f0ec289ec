"""A chat continued after the app restarts prefills only what is new: its KV cache was saved
next to the chat store when the app quit (Engine.close) and is found again by its tokens."""

from __future__ import annotations

from engine import Engine, GenerationParams
from outlier_tui.core.chat import ChatSession
from outlier_tui.store import ConversationStore


def _ignore(kind, text):
    pass


def _session(path, folder, store):
    engine = Engine(prompt_cache_dir=str(folder))
    engine.load(str(path)).result()
    return engine, ChatSession(engine, store, params=GenerationParams(max_tokens=6))


def test_a_chat_reopened_after_a_restart_prefills_only_the_new_message(checkpoint_factory, tmp_path):
    path = checkpoint_factory("qwen3_moe")
    folder = tmp_path / "prompt-caches"
    store = ConversationStore(tmp_path / "chats.sqlite3")
    try:
        engine, session = _session(path, folder, store)
        first = session.send("Tell me about disks and caches, please.", _ignore).run()
        chat_id = session.chat_id
        engine.close()  # the app quits: the chat's cache is written to disk
        assert any(folder.glob("*.safetensors"))

        engine, session = _session(path, folder, store)  # a new run: nothing in memory
        session.open(chat_id)
        second = session.send("And what about SSD read speeds?", _ignore).run()
        stats = second.stats
        assert stats.cache_source == "disk" and stats.cached_tokens >= first.stats.prompt_tokens
        new_message = len("And what about SSD read speeds?")  # one token per byte in the test tokenizer
        assert stats.prompt_tokens < new_message + 30  # the new message and the template around it
        engine.close()

        engine = Engine()  # the same turn with nothing cached, for the answer
        engine.load(str(path)).result()
        fresh = ChatSession(engine, store, params=GenerationParams(max_tokens=6))
        fresh.open(chat_id)
        assert fresh.retry(_ignore).run().stats.tokens == stats.tokens
        engine.close()
    finally:
        store.close()
