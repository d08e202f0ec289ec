"""The engine: one thread owns all MLX work.

Since mlx 0.31 MLX streams belong to the thread that made them, so loading,
prefill and decode all run on one long-lived thread; callers get Futures or
EventStreams back and never block on the model. Cancellation is an Event
checked between tokens.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.api import (
    EngineState,
    GenerationDone,
    GenerationFailed,
    GenerationParams,
    LoadProgress,
    Message,
    ModelInfo,
    TelemetrySnapshot,
    TextDelta,
)
from engine.cache_policy import DEFAULT_POLICY
from engine.errors import EngineStateError, OutlierError
from engine.events import EventStream
from engine.telemetry import Telemetry

if TYPE_CHECKING:  # both import MLX, which this module leaves to the MLX thread
    from engine.loader import LoadedModel
    from engine.prompt_cache import PromptCacheStore


@dataclass(frozen=True)
class _KVSettings:
    """The prompt caches' settings (Engine's kv_* and prompt_cache_* arguments)."""

    budget: int | None
    bits: int | None
    folder: str | None
    disk_cap: int | None


class MLXThread:
    """The process's one MLX thread, shared by every Engine, alive until exit.

    It never ends on purpose: with mlx 0.32, once a thread that created MLX
    streams (mlx-lm makes one when imported) has exited, the process aborts at
    interpreter shutdown ("terminate called without an active exception").
    An idle daemon thread blocked on its queue exits cleanly.
    """

    _shared: MLXThread | None = None
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls) -> MLXThread:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="outlier-mlx", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], Any]) -> Future:
        future: Future = Future()
        self._queue.put((fn, future))
        return future

    def _run(self) -> None:
        while True:
            fn, future = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # delivered to whoever waits on the future
                future.set_exception(exc)


class Engine:
    """Thread-safe facade; every public method returns immediately. All MLX
    work runs, in submission order, on the shared MLXThread."""

    def __init__(
        self,
        *,
        reader_threads: int | None = None,
        prefetch: bool | None = None,
        policy: str = DEFAULT_POLICY,
        compute_dtype: Any = "auto",
        record_trace: bool = False,
        kv_cache_bytes: int | None = None,
        kv_bits: int | None = None,
        prompt_cache_dir: str | None = None,
        prompt_cache_disk_bytes: int | None = None,
        page_cache: bool | None = None,
    ) -> None:
        """kv_cache_bytes: the prompt caches' budget (None: a quarter of the expert cache's,
        at least 512 MiB); kv_bits: 4 or 8 to quantize KV caches (changes outputs);
        prompt_cache_dir: where chats' caches are kept between runs (None: not kept)."""
        self._kv = _KVSettings(kv_cache_bytes, kv_bits, prompt_cache_dir, prompt_cache_disk_bytes)
        self._options = dict(
            reader_threads=reader_threads,
            prefetch=prefetch,
            policy=policy,
            compute_dtype=compute_dtype,
            page_cache=page_cache,
            record_trace=record_trace,
        )
        self.telemetry = Telemetry()
        self._mlx = MLXThread.shared()
        self._cancels: set[threading.Event] = set()  # of requests not finished yet
        self._cancels_lock = threading.Lock()
        self._loaded: LoadedModel | None = None
        self._prompt_caches: PromptCacheStore | None = None
        self._closed = False

    # ---- public API (any thread) ------------------------------------------------

    def load(
        self, model_dir: str, cache_bytes: int | None = None, on_progress: Callable[[LoadProgress], None] | None = None
    ) -> Future[ModelInfo]:
        return self._mlx.submit(lambda: self._load(str(model_dir), cache_bytes, on_progress))

    def generate(self, messages: Sequence[Message], params: GenerationParams = GenerationParams()) -> EventStream:
        stream = EventStream()
        cancel = threading.Event()
        with self._cancels_lock:
            self._cancels.add(cancel)
        messages = [m.copy() for m in messages]
        self._mlx.submit(lambda: self._generate(messages, params, cancel, stream))
        return stream

    def count_tokens(self, messages: Sequence[Message], params: GenerationParams = GenerationParams()) -> int:
        """Tokens of the prompt `generate` would build (chat template, tools): tokenizer work
        only, on the caller's thread, so counting never waits behind a running answer."""
        from engine.generation import encode_prompt, prompt_text

        loaded = self._loaded
        if loaded is None:
            raise EngineStateError("No model is loaded yet: wait for loading to finish or pick a model folder.")
        return len(encode_prompt(loaded, prompt_text(loaded, messages, params)))

    def cancel(self) -> None:
        with self._cancels_lock:
            for event in self._cancels:
                event.set()

    def reset(self) -> Future[None]:
        """Forget every prompt cache held in memory (files on disk stay)."""

        def clear() -> None:
            if self._prompt_caches is not None:
                self._prompt_caches.clear()
                self.telemetry.record_kv(0, self._prompt_caches.max_bytes, 0)

        return self._mlx.submit(clear)

    def save_prompt_caches(self) -> Future[int]:
        """Write this machine's chats' prompt caches to disk (when a chat is left, at exit)."""
        return self._mlx.submit(self._persist)

    def snapshot(self) -> TelemetrySnapshot:
        active = 0
        if self._loaded is not None:
            import mlx.core as mx

            active = mx.get_active_memory()
        return self.telemetry.snapshot(mlx_active_bytes=active)

    def close(self, timeout: float = 60.0) -> None:
        """Cancel what runs and free the model; waits so nothing computes at exit."""
        if self._closed:
            return
        self._closed = True
        self.cancel()
        with contextlib.suppress(TimeoutError):
            self._mlx.submit(self._unload).result(timeout=timeout)

    # ---- on the MLX thread --------------------------------------------------------

    def _load(self, path: str, cache_bytes: int | None, on_progress) -> ModelInfo:
        from engine.loader import LoadOptions, load_streamed_model

        self._unload()
        self.telemetry.set_state(EngineState.LOADING)

        try:
            self._loaded = load_streamed_model(
                path, cache_bytes, LoadOptions(**self._options), telemetry=self.telemetry, on_progress=on_progress
            )
        except Exception as exc:
            self.telemetry.set_state(EngineState.ERROR, _one_line(exc))
            if isinstance(exc, OutlierError):
                raise
            raise OutlierError(_one_line(exc)) from exc
        self._prompt_caches = self._make_prompt_caches(self._loaded)
        self.telemetry.record_kv(0, self._prompt_caches.max_bytes, 0)
        self.telemetry.set_state(EngineState.IDLE)
        return self._loaded.info

    def _generate(self, messages, params, cancel: threading.Event, stream: EventStream) -> None:
        from engine.generation import generate

        try:
            store = self._prompt_caches
            if self._loaded is None or store is None:
                raise EngineStateError("No model is loaded yet: wait for loading to finish or pick a model folder.")
            self.telemetry.set_state(EngineState.GENERATING)
            try:
                stats, cancelled = generate(
                    self._loaded,
                    store,
                    messages,
                    params,
                    cancel,
                    lambda text, token, kind: stream.put(TextDelta(text, token, kind)),
                )
            finally:
                store.active_bytes = 0
                self.telemetry.set_state(EngineState.IDLE)
            stream.put(GenerationDone(stats, cancelled=cancelled))
        except Exception as exc:  # every failure ends the stream; the thread keeps serving
            kind = type(exc).__name__ if isinstance(exc, OutlierError) else "InternalError"
            stream.put(GenerationFailed(_one_line(exc), error_type=kind))
        finally:
            with self._cancels_lock:
                self._cancels.discard(cancel)

    def _make_prompt_caches(self, loaded: LoadedModel) -> PromptCacheStore:
        from pathlib import Path

        from engine.prompt_cache import (
            DEFAULT_DISK_CAP_BYTES,
            PromptCacheFiles,
            PromptCacheStore,
            default_kv_budget,
            model_identity,
        )

        kv = self._kv
        model_id = model_identity(Path(loaded.info.path), loaded.info.compute_dtype, kv.bits)
        files = None
        if kv.folder is not None:
            files = PromptCacheFiles(Path(kv.folder), model_id, kv.disk_cap or DEFAULT_DISK_CAP_BYTES)
        budget = kv.budget if kv.budget is not None else default_kv_budget(loaded.info.cache_budget_bytes)
        return PromptCacheStore(model_id, budget, files, kv_bits=kv.bits)

    def _persist(self) -> int:
        return self._prompt_caches.persist() if self._prompt_caches is not None else 0

    def _unload(self) -> None:
        if self._loaded is not None:
            with contextlib.suppress(Exception):  # a cache that cannot be saved is not worth a crash
                self._persist()
            self._loaded.close()
            self._loaded = None
            self._prompt_caches = None
            self.telemetry.set_model(None)
            self.telemetry.set_state(EngineState.EMPTY)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OutlierError):
        return str(exc)
    text = str(exc).strip().splitlines()
    detail = text[0] if text else ""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    location = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else ""
    return f"Internal error {type(exc).__name__}{location}: {detail}. Please report it."
