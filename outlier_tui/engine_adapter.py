"""The one place outlier_tui constructs an engine.

Keeping the import here means the UIs never pull MLX in unless a real model
is used, and tests or UI demos can swap in the scripted FakeEngine.
"""

from __future__ import annotations

from engine.api import EngineClient


def make_engine(fake: bool = False, server: str | None = None, api_key: str | None = None) -> EngineClient:
    """A new engine: the real MLX one; with fake=True the scripted FakeEngine (no model needed);
    with server=URL a client of that OpenAI-compatible server (no model loaded here)."""
    if server:
        from engine.remote import RemoteEngine

        return RemoteEngine(server, api_key=api_key)
    if fake:
        from engine.fake import FakeEngine

        return FakeEngine()
    from engine import Engine

    return Engine()
