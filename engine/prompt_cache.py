"""KV caches of every chat and client, found again by token prefix, in one byte budget.

mlx-lm's LRUPromptCache (a trie of token prefixes) holds them in memory: a
request takes a copy of the longest cached prefix of its prompt (trimming a
longer trimmable cache back to it) and puts its cache back when it ends, so
two chats or two clients alternating in one engine each find their own.
A scope (a server key, or "" for this machine's chats) is part of the key:
one client cannot reuse, or time, another's prefix. Least recently used
entries leave first when the bytes exceed the budget.

PromptCacheFiles keeps caches across restarts: mlx-lm's save_prompt_cache
files next to the chat store, tagged with the model's identity and the exact
tokens, capped in bytes (oldest out first). A file that does not match, does
not parse or does not load is skipped with a notice, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx_lm.models.cache import (
    KVCache,
    LRUPromptCache,
    can_trim_prompt_cache,
    load_prompt_cache,
    save_prompt_cache,
    trim_prompt_cache,
)

log = logging.getLogger(__name__)

# what a cache entry is, for the LRU's eviction order (mlx-lm's names)
AT_MESSAGE_BOUNDARY = "user"  # a snapshot at the end of the last user message
AFTER_ANSWER = "assistant"  # the prompt and the answer

DEFAULT_DISK_CAP_BYTES = 4 << 30
# the cache classes a file may name (load_prompt_cache builds whatever class the file says)
_CACHE_CLASSES = frozenset(
    {"KVCache", "QuantizedKVCache", "RotatingKVCache", "ArraysCache", "ChunkedKVCache", "CacheList"}
)
MIN_KV_BUDGET_BYTES = 512 << 20


def default_kv_budget(expert_cache_bytes: int) -> int:
    """A quarter of the expert cache's budget, at least 512 MiB: KV caches grow with the chats
    (tokens x attention layers x KV heads x head size), experts do not."""
    return max(MIN_KV_BUDGET_BYTES, expert_cache_bytes // 4)


FILE_SUFFIX = ".kv.safetensors"


def quantize_kv(cache: list, bits: int) -> None:
    """mlx-lm's QuantizedKVCache for every attention layer's cache (what --kv-bits asks for),
    in groups of 64 values where the head size allows, else 32; a head size that is no multiple
    of 32 (tiny test models only) stays unquantized."""
    for i, layer in enumerate(cache):
        if not isinstance(layer, KVCache) or layer.keys is None:
            continue
        width = math.gcd(layer.keys.shape[-1], layer.values.shape[-1])
        group = 64 if width % 64 == 0 else 32 if width % 32 == 0 else 0
        if group:
            cache[i] = layer.to_quantized(group_size=group, bits=bits)


def cache_nbytes(cache: Sequence[Any]) -> int:
    return sum(c.nbytes for c in cache)


class PromptCaches:
    """The in-memory prefix caches of one loaded model (owned by the engine thread)."""

    def __init__(self, model_id: str, max_bytes: int, max_entries: int = 64) -> None:
        self.model_id = model_id
        self.max_bytes = max_bytes
        self._lru = LRUPromptCache(max_size=max_entries, max_bytes=max_bytes)
        self._scopes: set[str] = set()

    @property
    def nbytes(self) -> int:
        return self._lru.nbytes

    def __len__(self) -> int:
        return len(self._lru)

    def usable(self, scope: str, tokens: Sequence[int]) -> int:
        """How many leading tokens of `tokens` a cached entry can give back (without copying)."""
        result = self._lru._trie.search((self.model_id, scope), list(tokens))
        if result.exact is not None:
            return len(tokens)
        short = len(result.shorter) if result.shorter is not None else 0
        if result.longer is not None and result.common_prefix > short:
            entry = self._lru._trie.get(result.model, result.longer)
            if can_trim_prompt_cache(entry.prompt_cache):
                return min(len(tokens) - 1, result.common_prefix)
        return short

    def fetch(self, scope: str, tokens: Sequence[int]) -> tuple[list | None, int]:
        """A copy of the cache of the longest usable prefix of `tokens` short of the last token
        (always prefilled, for its logits), and that prefix's length."""
        key = (self.model_id, scope)
        cache, rest = self._lru.fetch_nearest_cache(key, list(tokens))
        if cache is not None and not rest:  # an exact match: give back the last token
            if can_trim_prompt_cache(cache):
                trim_prompt_cache(cache, 1)
                return cache, len(tokens) - 1
            cache, rest = self._lru.fetch_nearest_cache(key, list(tokens[:-1]))
            return (cache, len(tokens) - 1 - len(rest)) if cache is not None else (None, 0)
        if cache is None:
            return None, 0
        return cache, len(tokens) - len(rest)

    def insert(self, scope: str, tokens: Sequence[int], cache: list, kind: str = AFTER_ANSWER) -> None:
        self._scopes.add(scope)
        self._lru.insert_cache((self.model_id, scope), list(tokens), cache, cache_type=kind)

    def make_room(self, active_bytes: int) -> None:
        """Evict least recently used entries until they and the running request's cache fit."""
        self._lru.trim_to(n_bytes=max(0, self.max_bytes - active_bytes))

    def entries(self, scope: str) -> list[tuple[list[int], list, str]]:
        """(tokens, cache, kind) of every entry of `scope`, least recently used first."""
        key = (self.model_id, scope)
        out = []
        for kind in self._lru._lru._ordering:
            for model, tokens in self._lru._lru._lrus[kind]:
                if model == key:
                    entry = self._lru._trie.get(model, tokens)
                    out.append((list(tokens), entry.prompt_cache, kind))
        return out

    def clear(self) -> None:
        self._lru.trim_to(n_sequences=0)


@dataclass(frozen=True)
class CacheFile:
    path: Path
    tokens: tuple[int, ...]
    trimmable: bool
    nbytes: int
    kind: str


class PromptCacheFiles:
    """Prompt caches saved between runs, for one model identity."""

    def __init__(self, folder: Path, model_id: str, cap_bytes: int = DEFAULT_DISK_CAP_BYTES) -> None:
        self.folder = folder
        self.model_id = model_id
        self.cap_bytes = cap_bytes
        self.notices: list[str] = []  # one line per file skipped, for the UI to show
        self._files: list[CacheFile] = []
        self.scan()

    def scan(self) -> None:
        """Read every file's header (not its arrays); keep this model's."""
        self._files = []
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob(f"*{FILE_SUFFIX}")):
            try:
                meta = _header_metadata(path)
            except (OSError, ValueError) as exc:
                self.notices.append(f"Ignored a damaged prompt cache file {path.name}: {exc}.")
                continue
            if meta.get("model_id") != self.model_id:
                continue  # another model's (or another setting's) cache
            try:
                tokens = tuple(int(t) for t in json.loads(meta["tokens"]))
                file = CacheFile(path, tokens, meta.get("trimmable") == "1", path.stat().st_size, meta.get("kind", ""))
            except (KeyError, ValueError, TypeError, OSError):
                self.notices.append(f"Ignored a prompt cache file with bad metadata: {path.name}.")
                continue
            self._files.append(file)

    def best(self, tokens: Sequence[int]) -> tuple[CacheFile | None, int]:
        """The file that gives back the most leading tokens of `tokens` (the last token excluded)."""
        head = tuple(tokens[:-1])
        best, best_len = None, 0
        for file in self._files:
            common = common_prefix(file.tokens, head)
            usable = common if common == len(file.tokens) else (min(common, len(head)) if file.trimmable else 0)
            if usable > best_len:
                best, best_len = file, usable
        return best, best_len

    def load(self, file: CacheFile) -> list | None:
        """The file's cache, checked against its header; None (and a notice) when it cannot be used."""
        try:
            classes = _header_classes(file.path)
        except (OSError, ValueError):
            classes = {"?"}
        if not classes or not classes <= _CACHE_CLASSES:
            self._forget(file, f"Ignored a prompt cache file of unknown cache types: {file.path.name}.")
            return None
        try:
            cache, meta = load_prompt_cache(str(file.path), return_metadata=True)
        except Exception as exc:  # a truncated or corrupt file: never trusted
            self._forget(file, f"Ignored a damaged prompt cache file {file.path.name} ({type(exc).__name__}).")
            return None
        offsets = {c.offset for c in cache if isinstance(getattr(c, "offset", None), int)}
        if meta.get("model_id") != self.model_id or (offsets and offsets != {len(file.tokens)}):
            self._forget(file, f"Ignored a prompt cache file that does not match its tokens: {file.path.name}.")
            return None
        return cache

    def save(self, tokens: Sequence[int], cache: list, kind: str) -> Path | None:
        """Write one cache (replacing a file of the same tokens), then keep the folder under its cap."""
        for known in self._files:
            if known.tokens == tuple(tokens):  # the same tokens give the same cache: keep the file
                self.touch(known)
                return known.path
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(json.dumps([self.model_id, list(tokens)]).encode()).hexdigest()[:24]
        path = self.folder / f"{digest}{FILE_SUFFIX}"
        meta = {
            "model_id": self.model_id,
            "tokens": json.dumps(list(tokens)),
            "trimmable": "1" if can_trim_prompt_cache(cache) else "0",
            "kind": kind,
        }
        tmp = path.with_name(path.name + ".tmp.safetensors")
        try:
            save_prompt_cache(str(tmp), cache, meta)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self.notices.append(f"Could not save a prompt cache ({exc.strerror or exc}).")
            return None
        self._files = [f for f in self._files if f.path != path]
        self._files.append(CacheFile(path, tuple(tokens), meta["trimmable"] == "1", path.stat().st_size, kind))
        self.enforce_cap()
        return path

    def enforce_cap(self) -> None:
        """Oldest files out (every model's) until the folder is under the cap."""
        files = []
        for path in self.folder.glob(f"*{FILE_SUFFIX}"):
            try:
                st = path.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, path))
        files.sort()
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total <= self.cap_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            self._files = [f for f in self._files if f.path != path]

    def touch(self, file: CacheFile) -> None:
        """Mark a file as just used, so the cap removes it last."""
        now = time.time()
        with contextlib.suppress(OSError):
            os.utime(file.path, (now, now))

    @property
    def files(self) -> list[CacheFile]:
        return list(self._files)

    def _forget(self, file: CacheFile, notice: str) -> None:
        self.notices.append(notice)
        log.warning(notice)
        self._files = [f for f in self._files if f.path != file.path]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two token lists share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _header_metadata(path: Path) -> dict[str, str]:
    """The `metadata` part of a save_prompt_cache file, from its safetensors header alone."""
    return {k[2:]: v for k, v in _raw_metadata(path).items() if k.startswith("0.") and isinstance(v, str)}


def _header_classes(path: Path) -> set[str]:
    """The cache class of every layer the file holds (save_prompt_cache's "1.<layer>" entries)."""
    return {v if isinstance(v, str) else "?" for k, v in _raw_metadata(path).items() if k.startswith("1.")}


def _raw_metadata(path: Path) -> dict:
    """The safetensors header's __metadata__ of a save_prompt_cache file."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("shorter than a safetensors header")
        size = int.from_bytes(head, "little")
        if size > 64 << 20:
            raise ValueError("header too large")
        header = json.loads(f.read(size))
    raw = header.get("__metadata__", {})
    if not isinstance(raw, dict):
        raise ValueError("no metadata")
    # save_prompt_cache flattens [metadata, classes, scalars]: "0.<name>", "1.<layer>", "2.<i>"
    return raw


def model_identity(path: Path, *parts: object) -> str:
    """What makes two KV caches interchangeable: the checkpoint's config and weight files
    (names and sizes), and settings that change the cache's contents (dtype, KV bits)."""
    h = hashlib.sha256()
    config = path / "config.json"
    if config.is_file():
        h.update(config.read_bytes())
    for weights in sorted(path.glob("*.safetensors")):
        h.update(f"{weights.name}:{weights.stat().st_size}".encode())
    h.update(repr(parts).encode())
    return h.hexdigest()[:32]


class PromptCacheStore:
    """Where a request gets its starting KV cache and leaves its final one: memory first,
    then (for this machine's chats, scope "") the files of earlier runs."""

    def __init__(
        self,
        model_id: str = "",
        max_bytes: int = 1 << 62,
        files: PromptCacheFiles | None = None,
        kv_bits: int | None = None,
    ) -> None:
        self.memory = PromptCaches(model_id, max_bytes)
        self.files = files
        self.kv_bits = kv_bits
        self.active_bytes = 0  # the running request's cache, counted in the same budget

    @property
    def nbytes(self) -> int:
        return self.memory.nbytes + self.active_bytes

    @property
    def max_bytes(self) -> int:
        return self.memory.max_bytes

    def take(self, scope: str, tokens: Sequence[int]) -> tuple[list | None, int, str]:
        """A cache holding the longest reusable prefix of `tokens`, its length, and where it came
        from ("memory", "disk" or "")."""
        from_disk = None
        if self.files is not None and scope == "":
            file, usable = self.files.best(tokens)
            if file is not None and usable > self.memory.usable(scope, list(tokens[:-1])):
                from_disk = self.files.load(file)
                if from_disk is not None:
                    self.files.touch(file)
                    self.memory.insert(scope, file.tokens, from_disk, file.kind or AFTER_ANSWER)
        cache, start = self.memory.fetch(scope, tokens)
        if cache is None:
            return None, 0, ""
        return cache, start, "disk" if from_disk is not None else "memory"

    def put(self, scope: str, tokens: Sequence[int], cache: list, kind: str = AFTER_ANSWER) -> None:
        self.memory.insert(scope, tokens, cache, kind)

    def persist(self) -> int:
        """Save this machine's chats' caches to disk; returns how many files were written."""
        if self.files is None:
            return 0
        saved = 0
        for tokens, cache, kind in self.memory.entries(""):
            if self.files.save(tokens, cache, kind) is not None:
                saved += 1
        return saved

    def clear(self) -> None:
        self.memory.clear()
        self.active_bytes = 0

    def take_notices(self) -> str:
        """What the files skipped since the last call, as one line ("" when nothing was)."""
        if self.files is None or not self.files.notices:
            return ""
        notices, self.files.notices = self.files.notices, []
        return notices[0] if len(notices) == 1 else f"{notices[0]} (and {len(notices) - 1} more)"
