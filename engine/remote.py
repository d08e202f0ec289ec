"""An EngineClient that talks to an OpenAI-compatible server instead of running a model.

`outlier --server URL` and `outlier chat --plain --server URL` use it: answers
stream from /v1/chat/completions (vLLM, SGLang, mlx_lm.server, llama.cpp's
server, `outlier serve`, ...). Against `outlier serve` the heatmap and memory
data come from its /v1/outlier/telemetry stream, and an answer's expert and
memory figures from the `outlier` object beside its `usage` (counted by the
server's engine over that answer alone, whoever else it serves); other servers
send neither: the snapshot says so and the answer's figures are None (unknown).
Every failure (server unreachable, wrong key, server gone mid-answer) ends the
answer with a one-line GenerationFailed; what already arrived was streamed and
stays.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future

import httpx

from engine.api import (
    EngineState,
    GenerationDone,
    GenerationFailed,
    GenerationParams,
    GenerationStats,
    LoadProgress,
    Message,
    ModelInfo,
    TelemetrySnapshot,
    TextDelta,
)
from engine.errors import OutlierError
from engine.events import EventStream
from engine.reasoning import THINKING
from engine.wire import TelemetryDecoder

NO_TELEMETRY = "The server sends no expert telemetry (it is not an Outlier server)."
TELEMETRY_WAIT_S = 5.0  # how long load() waits for the first telemetry event
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0


class RemoteError(OutlierError):
    """The server could not be reached or refused the request."""


def api_base(url: str) -> str:
    """'http://host:8080' or 'http://host:8080/v1/' -> 'http://host:8080/v1'."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url if url.endswith("/v1") else url + "/v1"


class RemoteEngine:
    """Thread-safe like engine.Engine: every public method returns at once."""

    def __init__(self, url: str, api_key: str | None = None, model: str | None = None) -> None:
        self.base_url = api_base(url)
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        )
        self._lock = threading.Lock()
        self._info: ModelInfo | None = None
        self._state = EngineState.EMPTY
        self._latest: TelemetrySnapshot | None = None  # from the server's telemetry stream
        self._has_telemetry = False
        self._telemetry_started = threading.Event()
        self._telemetry_event = threading.Event()  # the first telemetry answer (or refusal) came
        self._speeds = (0.0, 0.0)  # (prompt, generation) tok/s measured here, for other servers
        self._current: _Request | None = None
        self._closed = threading.Event()

    # ---- EngineClient ------------------------------------------------------------

    def load(
        self,
        model_dir: str = "",
        cache_bytes: int | None = None,
        on_progress: Callable[[LoadProgress], None] | None = None,
    ) -> Future[ModelInfo]:
        """Connect: check the server and key, pick the model, start the telemetry stream.
        model_dir is the model name to ask for ('' or None: the server's first model)."""
        future: Future = Future()

        def connect() -> None:
            try:
                future.set_result(self._connect(model_dir or self.model, on_progress))
            except BaseException as exc:
                with self._lock:
                    self._state = EngineState.ERROR
                future.set_exception(exc)

        threading.Thread(target=connect, name="outlier-remote-load", daemon=True).start()
        return future

    def generate(self, messages: Sequence[Message], params: GenerationParams = GenerationParams()) -> EventStream:
        stream = EventStream()
        request = _Request(stream)
        with self._lock:
            self._current = request
        threading.Thread(
            target=self._generate,
            args=([dict(m) for m in messages], params, request),
            name="outlier-remote-generate",
            daemon=True,
        ).start()
        return stream

    def cancel(self) -> None:
        with self._lock:
            request = self._current
        if request is not None:
            request.cancel()

    def reset(self) -> Future[None]:
        """Nothing to forget here: the server reuses its KV cache by prompt prefix."""
        future: Future = Future()
        future.set_result(None)
        return future

    def save_prompt_caches(self) -> Future[int]:
        """The server keeps its caches in its own memory: nothing is saved here."""
        future: Future = Future()
        future.set_result(0)
        return future

    def snapshot(self) -> TelemetrySnapshot:
        with self._lock:
            if self._has_telemetry and self._latest is not None:
                return self._latest
            prompt_tps, generation_tps = self._speeds
            return TelemetrySnapshot(
                state=self._state,
                step=0,
                model=self._info,
                prompt_tps=prompt_tps,
                generation_tps=generation_tps,
                telemetry_note=NO_TELEMETRY if self._info is not None else None,
            )

    def close(self) -> None:
        self._closed.set()
        self.cancel()
        self._http.close()

    # ---- connecting ----------------------------------------------------------------

    def _connect(self, model: str | None, on_progress) -> ModelInfo:
        progress = on_progress or (lambda p: None)
        with self._lock:
            self._state = EngineState.LOADING
        progress(LoadProgress(0.1, f"connecting to {self.base_url}"))
        names = self._model_names()
        model = model or (names[0] if names else None)  # None: the server's default model
        self.model = model
        progress(LoadProgress(0.5, f"asking {self.base_url} for expert telemetry"))
        if not self._telemetry_started.is_set():
            self._telemetry_started.set()
            threading.Thread(target=self._follow_telemetry, name="outlier-remote-telemetry", daemon=True).start()
        self._telemetry_event.wait(TELEMETRY_WAIT_S)
        with self._lock:
            remote = self._latest.model if self._has_telemetry and self._latest is not None else None
            shown = model or "the server's model"
            info = (
                dataclasses.replace(remote, path=shown)
                if remote is not None
                else ModelInfo(
                    path=shown,
                    model_type="remote",
                    num_layers=0,
                    moe_layers=(),
                    num_experts=0,
                    top_k=0,
                    expert_bytes=0,
                    total_expert_bytes=0,
                    resident_bytes=0,
                    cache_budget_bytes=0,
                    cache_slots=0,
                )
            )
            self._info = info
            self._state = EngineState.IDLE
        progress(LoadProgress(1.0, f"connected to {shown} at {self.base_url}"))
        return info

    def _model_names(self) -> list[str]:
        """The server's /v1/models; RemoteError if it cannot be reached or refuses the key. A list
        that fails otherwise is empty (mlx_lm.server's breaks without a Hugging Face cache)."""
        try:
            response = self._http.get("/models")
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
            raise RemoteError(_unreachable(self.base_url, exc)) from None
        except httpx.HTTPError:
            return []
        if response.status_code in (401, 403):
            raise RemoteError(_refused(self.base_url, response.status_code, response.text))
        try:
            data = response.json().get("data", []) if response.status_code == 200 else []
            return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
        except (ValueError, AttributeError, TypeError):
            return []

    def _follow_telemetry(self) -> None:
        """Keep the latest snapshot from /v1/outlier/telemetry; reconnect if the stream drops."""
        while not self._closed.is_set():
            try:
                with self._http.stream("GET", "/outlier/telemetry") as response:
                    kind = response.headers.get("content-type", "")
                    if response.status_code != 200 or not kind.startswith("text/event-stream"):
                        # not an Outlier server (or too old): nothing to follow
                        self._telemetry_event.set()
                        return
                    decoder = TelemetryDecoder()  # one per connection: a key frame, then deltas
                    for data in _sse_data(response.iter_lines()):
                        snapshot = decoder.decode(json.loads(data))
                        with self._lock:
                            self._latest = snapshot
                            self._has_telemetry = True
                        self._telemetry_event.set()
                        if self._closed.is_set():
                            return
            except (httpx.HTTPError, ValueError, TypeError, KeyError, RuntimeError) as exc:
                if self._closed.is_set():
                    return
                with self._lock:
                    if self._latest is not None:
                        self._latest = dataclasses.replace(
                            self._latest,
                            state=EngineState.ERROR,
                            error=f"Lost the server's telemetry ({type(exc).__name__}); reconnecting.",
                        )
                self._telemetry_event.set()
            self._closed.wait(1.0)

    # ---- generating ------------------------------------------------------------------

    def _generate(self, messages: list[Message], params: GenerationParams, request: _Request) -> None:
        with self._lock:
            self._state = EngineState.GENERATING
        try:
            stats = self._stream_answer(messages, params, request)
            request.stream.put(GenerationDone(stats, cancelled=request.cancelled))
        except RemoteError as exc:
            request.stream.put(GenerationFailed(str(exc), error_type="RemoteError"))
        except Exception as exc:  # every request ends with an event, or the UI would wait forever
            request.stream.put(
                GenerationFailed(
                    f"Internal error {type(exc).__name__} talking to {self.base_url}: {_one_line(str(exc))}. "
                    "Please report it.",
                    error_type="InternalError",
                )
            )
        finally:
            with self._lock:
                self._state = EngineState.IDLE
                if self._current is request:
                    self._current = None

    def _stream_answer(self, messages: list[Message], params: GenerationParams, request: _Request) -> GenerationStats:
        body: dict = {
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.model:
            body["model"] = self.model
        if params.enable_thinking is not None:  # the convention of vLLM, SGLang, mlx_lm.server
            body["chat_template_kwargs"] = {"enable_thinking": params.enable_thinking}
        if params.seed is not None:
            body["seed"] = params.seed
        if params.chat_template:
            path, body["messages"] = "/chat/completions", messages
        else:
            path, body["prompt"] = "/completions", messages[-1]["content"] if messages else ""
        start = time.perf_counter()
        first = last = None
        pieces = 0
        usage: dict = {}
        figures: object = {}  # the "outlier" object of `outlier serve`'s usage chunk
        finished = connected = False
        try:
            with self._http.stream("POST", path, json=body) as response:
                connected = True
                request.attach(response)
                if response.status_code >= 400:
                    response.read()
                    raise RemoteError(_refused(self.base_url, response.status_code, response.text))
                for data in _sse_data(response.iter_lines()):
                    if data == "[DONE]":
                        finished = True
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise RemoteError(f"The server failed mid-answer: {_message(chunk)}")
                    usage = chunk.get("usage") or usage
                    figures = chunk.get("outlier") or figures
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        # Reasoning models: `reasoning_content` (vLLM, SGLang, outlier serve) or
                        # `reasoning` (mlx_lm.server) carries the thinking, apart from the answer.
                        thinking = (
                            delta.get("reasoning_content")
                            or delta.get("reasoning")
                            or choice.get("reasoning_content")
                            or ""
                        )
                        if thinking:
                            last = time.perf_counter()
                            first = first or last
                            request.stream.put(TextDelta(thinking, -1, kind=THINKING))
                        text = delta.get("content") or choice.get("text") or ""
                        if text:
                            last = time.perf_counter()
                            first = first or last
                            pieces += 1
                            request.stream.put(TextDelta(text, -1))
                        if choice.get("finish_reason"):
                            finished = True
                    if request.cancelled:
                        break
        except RemoteError:
            raise
        except Exception as exc:
            if request.cancelled:
                pass  # cancel() closed the response under the reader: any error may surface
            elif not connected:
                raise RemoteError(_unreachable(self.base_url, exc)) from None
            elif isinstance(exc, (httpx.HTTPError, ValueError)):
                raise RemoteError(_gone(self.base_url, exc, started=first is not None)) from None
            else:
                raise
        if not finished and not request.cancelled:
            raise RemoteError(_gone(self.base_url, None, started=first is not None))
        return self._stats(usage, figures, pieces, start, first, last)

    def _stats(
        self, usage: dict, figures: object, pieces: int, start: float, first: float | None, last: float | None
    ) -> GenerationStats:
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        prompt = max(0, (usage.get("prompt_tokens") or 0) - cached)
        generated = usage.get("completion_tokens") or pieces
        ttft = (first - start) if first else 0.0
        decode = (last - first) if first and last else 0.0
        generation_tps = (generated - 1) / decode if generated > 1 and decode > 0 else 0.0
        prompt_tps = prompt / ttft if ttft > 0 else 0.0
        with self._lock:
            self._speeds = (prompt_tps, generation_tps)
        return GenerationStats(
            tokens=(),
            prompt_tokens=prompt,
            generation_tokens=generated,
            prompt_tps=prompt_tps,
            generation_tps=generation_tps,
            time_to_first_token=ttft,
            peak_rss_bytes=_count(figures, "peak_rss_bytes"),
            cache_budget_bytes=_count(figures, "cache_budget_bytes"),
            cache_peak_bytes=_count(figures, "cache_peak_bytes"),
            expert_hits=_count(figures, "expert_hits"),
            expert_misses=_count(figures, "expert_misses"),
            bytes_read=_count(figures, "bytes_read"),
            io_wait_seconds=_seconds(figures, "io_wait_seconds"),
            cached_tokens=cached,
        )


class _Request:
    """One answer in flight: cancel() closes its HTTP response, which the server sees as a
    disconnect and answers by stopping the generation."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.cancelled = False
        self._response: httpx.Response | None = None
        self._lock = threading.Lock()

    def attach(self, response: httpx.Response) -> None:
        with self._lock:
            self._response = response
            if not self.cancelled:
                return
        response.close()

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            response = self._response
        if response is not None:
            response.close()


def _count(figures: object, name: str) -> int | None:
    """One of the answer's figures from the usage chunk's "outlier" object (sent by `outlier
    serve` only): a whole non-negative number, else None (unknown)."""
    value = figures.get(name) if isinstance(figures, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _seconds(figures: object, name: str) -> float | None:
    value = figures.get(name) if isinstance(figures, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf:
        return float(value)
    return None


def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line.startswith("data:"):
            yield line[5:].strip()


def _message(body: dict) -> str:
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or body.get("detail") or body)


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    return (lines[0] if lines else "")[:300]


def _refused(base_url: str, status: int, text: str) -> str:
    try:
        detail = _one_line(_message(json.loads(text)))
    except (ValueError, AttributeError):
        detail = _one_line(text)
    if status == 401 or status == 403:
        return f"The server at {base_url} refused the API key ({detail}): pass the right --api-key."
    if status == 404:
        return (
            f"The server at {base_url} has no such endpoint or model ({detail}): check the URL "
            "(an OpenAI-compatible server, e.g. http://host:8080) and --model."
        )
    if status in (429, 503):
        return f"The server at {base_url} is busy ({detail}): send the message again in a moment."
    return f"The server at {base_url} refused the request (HTTP {status}: {detail})."


def _unreachable(base_url: str, exc: Exception) -> str:
    return (
        f"Cannot reach the server at {base_url} ({type(exc).__name__}: {_one_line(str(exc)) or 'no answer'}): "
        "check the URL and that the server is running."
    )


def _gone(base_url: str, exc: Exception | None, started: bool) -> str:
    why = f"{type(exc).__name__}: {_one_line(str(exc))}" if exc is not None else "the stream ended early"
    kept = "; what arrived is kept" if started else ""
    return f"The server at {base_url} went away mid-answer ({why}){kept}: send the message again."
