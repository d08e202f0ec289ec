"""Shared fixtures for the plain-mode tests: a private data dir, a store, a REPL driver."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import pytest
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from engine.fake import FakeEngine
from outlier_tui.plain.session import PlainSession
from outlier_tui.store import ConversationStore


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """Every test gets its own OUTLIER_DATA_DIR (chats, input history)."""
    path = tmp_path / "data"
    monkeypatch.setenv("OUTLIER_DATA_DIR", str(path))
    monkeypatch.delenv("NO_COLOR", raising=False)
    return path


@pytest.fixture
def store(data_dir):
    s = ConversationStore()
    yield s
    s.close()


@pytest.fixture
def engine():
    e = FakeEngine()
    e.load("fake-model").result()
    yield e
    e.close()


class TriggerOut(io.StringIO):
    """A StringIO that runs `on_write` once, the first time text is written (used to press Ctrl-C mid-answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.on_write: Callable[[str], None] | None = None

    def write(self, text: str) -> int:
        n = super().write(text)
        hook, self.on_write = self.on_write, None
        if hook is not None:
            hook(text)
        return n


class Driver:
    """Runs a PlainSession on prompt_toolkit pipe input and a DummyOutput."""

    def __init__(self, engine, store, **kwargs) -> None:
        self.engine = engine
        self.store = store
        self.kwargs = kwargs
        self.out = TriggerOut()
        self.err = io.StringIO()
        self.session: PlainSession | None = None
        self.exit_code: int | None = None

    def run(self, text: str, *, close: bool = True, script: Callable[[Driver, object], None] | None = None) -> str:
        """Type `text`, then (if close) end the input: the session exits at EOF like on Ctrl-D."""
        with create_pipe_input() as inp:
            self.inp = inp
            self.session = PlainSession(
                self.engine,
                self.store,
                input=inp,
                output=DummyOutput(),
                out=self.out,
                err=self.err,
                history=self.kwargs.pop("history", InMemoryHistory()),
                **self.kwargs,
            )
            inp.send_text(text)
            if script is not None:
                script(self, inp)
            elif close:
                inp.close()
            self.exit_code = asyncio.run(asyncio.wait_for(self.session.run_async(), timeout=20))
        return self.out.getvalue()


@pytest.fixture
def driver(engine, store):
    """driver(**session_kwargs) or driver(other_engine, **session_kwargs) -> Driver."""
    return lambda with_engine=None, **kw: Driver(with_engine or engine, store, **kw)
