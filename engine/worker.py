"""The engine thread: the one owner of all MLX work.

Since mlx 0.31 MLX streams belong to the thread that made them, so loading,
prefill and decode all run here; callers talk to it through a request queue
and get Futures or EventStreams back. Cancellation is an Event checked
between tokens.
"""

from __future__ import annotations

import queue
import threading
import traceback
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from engine.api import (
    GenerationDone,
    GenerationFailed,
    GenerationParams,
    LoadProgress,
    Message,
    ModelInfo,
    TelemetrySnapshot,
    TextDelta,
)
from engine.errors import EngineStateError, OutlierError
from engine.events import EventStream
from engine.telemetry import Telemetry


@dataclass
class _Request:
    kind: str  # "load" | "generate" | "reset" | "stop"
    args: tuple = ()
    future: Future | None = None
    stream: EventStream | None = None


class Engine:
    """Thread-safe facade; every public method returns immediately."""

    def __init__(self, *, reader_threads: int = 4, prefetch: bool = False, policy: str = "lru",
                 compute_dtype: Any = "auto", record_trace: bool = False) -> None:
        self._options = dict(reader_threads=reader_threads, prefetch=prefetch, policy=policy,
                             compute_dtype=compute_dtype, record_trace=record_trace)
        self.telemetry = Telemetry()
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._cancels: set[threading.Event] = set()  # of requests not finished yet
        self._cancels_lock = threading.Lock()
        self._loaded = None
        self._conversation = None
        self._thread = threading.Thread(target=self._serve, name="outlier-engine", daemon=True)
        self._thread.start()

    # ---- public API (any thread) ------------------------------------------------

    def load(self, model_dir: str, cache_bytes: int | None = None,
             on_progress: Callable[[LoadProgress], None] | None = None) -> Future:
        future: Future = Future()
        self._requests.put(_Request("load", (str(model_dir), cache_bytes, on_progress), future))
        return future

    def generate(self, messages: Sequence[Message],
                 params: GenerationParams = GenerationParams()) -> EventStream:
        stream = EventStream()
        cancel = threading.Event()
        with self._cancels_lock:
            self._cancels.add(cancel)
        self._requests.put(_Request("generate", ([dict(m) for m in messages], params, cancel),
                                    stream=stream))
        return stream

    def cancel(self) -> None:
        with self._cancels_lock:
            for event in self._cancels:
                event.set()

    def reset(self) -> Future:
        future: Future = Future()
        self._requests.put(_Request("reset", (), future))
        return future

    def snapshot(self) -> TelemetrySnapshot:
        active = 0
        try:
            import mlx.core as mx

            active = mx.get_active_memory()
        except (ImportError, AttributeError):
            pass
        return self.telemetry.snapshot(mlx_active_bytes=active)

    def run_on_engine(self, fn: Callable[[Any], Any]) -> Future:
        """Run fn(loaded_model) on the engine thread (tests, benchmarks)."""
        future: Future = Future()
        self._requests.put(_Request("call", (fn,), future))
        return future

    def close(self) -> None:
        self.cancel()
        if self._thread.is_alive():
            done: Future = Future()
            self._requests.put(_Request("stop", (), done))
            self._thread.join(timeout=30)

    # ---- engine thread ----------------------------------------------------------

    def _serve(self) -> None:
        while True:
            request = self._requests.get()
            if request.kind == "stop":
                self._unload()
                request.future.set_result(None)
                return
            handler = getattr(self, f"_handle_{request.kind}")
            try:
                handler(request)
            except Exception as exc:  # keep serving whatever one request did
                message = _one_line(exc)
                if request.stream is not None:
                    request.stream.put(GenerationFailed(message))
                elif request.future is not None and not request.future.done():
                    request.future.set_exception(exc if isinstance(exc, OutlierError) else OutlierError(message))

    def _handle_load(self, request: _Request) -> None:
        from engine.generation import Conversation
        from engine.loader import load_streamed_model

        path, cache_bytes, on_progress = request.args
        self._unload()
        self.telemetry.set_state("loading")

        def progress(fraction: float, message: str) -> None:
            if on_progress is not None:
                on_progress(LoadProgress(fraction, message))

        try:
            self._loaded = load_streamed_model(path, cache_bytes, telemetry=self.telemetry,
                                               on_progress=progress, **self._options)
        except Exception as exc:
            self.telemetry.set_state("error", _one_line(exc))
            raise
        self._conversation = Conversation()
        self.telemetry.set_state("idle")
        request.future.set_result(self._loaded.info)

    def _handle_generate(self, request: _Request) -> None:
        from engine.generation import generate

        messages, params, cancel = request.args
        stream = request.stream
        try:
            self._generate(messages, params, cancel, stream)
        finally:
            with self._cancels_lock:
                self._cancels.discard(cancel)

    def _generate(self, messages, params, cancel, stream) -> None:
        from engine.generation import generate

        if self._loaded is None:
            stream.put(GenerationFailed(str(EngineStateError(
                "No model is loaded yet: wait for loading to finish or pick a model folder."))))
            return
        self.telemetry.set_state("generating")
        try:
            stats, cancelled = generate(
                self._loaded, self._conversation, messages, params, cancel,
                lambda text, token: stream.put(TextDelta(text, token)),
            )
        except Exception:
            self._conversation.clear()  # a half-run forward left the KV cache inconsistent
            self.telemetry.set_state("idle")
            raise
        self.telemetry.set_state("idle")
        stream.put(GenerationDone(stats, cancelled=cancelled))

    def _handle_reset(self, request: _Request) -> None:
        if self._conversation is not None:
            self._conversation.clear()
        request.future.set_result(None)

    def _handle_call(self, request: _Request) -> None:
        request.future.set_result(request.args[0](self._loaded))

    def _unload(self) -> None:
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None
            self._conversation = None
            self.telemetry.set_model(None)
            self.telemetry.set_state("empty")


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OutlierError):
        return str(exc)
    text = str(exc).strip().splitlines()
    detail = text[0] if text else ""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    location = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else ""
    return f"Internal error {type(exc).__name__}{location}: {detail}. Please report it."
