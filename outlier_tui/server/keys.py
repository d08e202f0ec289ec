"""API keys: where they come from, and which one a request carries (in constant time).

Keys come from a file (one per line) or $OUTLIER_API_KEY, not the command
line, where every local user can read them (/proc/PID/cmdline). The same
whitespace rule applies to both sides: surrounding whitespace is dropped from
each configured key and from the bearer token. Tokens and keys are compared as
SHA-256 digests with hmac.compare_digest against every key, so the time taken
says neither which key was close nor how long the keys are.

With several keys, a request's key index is its `namespace`: clients holding
different keys do not share a prompt cache (queue.EngineQueue), so one cannot
learn from `cached_tokens` or timing what another asked.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path


class KeyFileError(ValueError):
    """A key file that cannot be used (one line for the user)."""


def read_key_file(path: str) -> list[str]:
    """The keys in `path`: one per line; blank lines and lines starting with '#' are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise KeyFileError(f"--api-key-file {path}: cannot read it ({reason}).") from None
    keys = [line.strip() for line in text.splitlines()]
    keys = [k for k in keys if k and not k.startswith("#")]
    if not keys:
        raise KeyFileError(f"--api-key-file {path} holds no key (one key per line).")
    return keys


class KeyRing:
    """The keys a server accepts; `identify` says which one a request's bearer token is."""

    def __init__(self, keys: list[str]) -> None:
        cleaned = [k.strip() for k in keys]
        if any(not k for k in cleaned):
            raise KeyFileError("an API key is empty (or only whitespace).")
        self._digests = [_digest(k) for k in dict.fromkeys(cleaned)]  # duplicates: one identity

    def __len__(self) -> int:
        return len(self._digests)

    def identify(self, authorization: str) -> int | None:
        """The index of the key in an `Authorization: Bearer KEY` header value, or None."""
        scheme, _, token = authorization.strip().partition(" ")
        given = _digest(token.strip())
        found = None
        for index, digest in enumerate(self._digests):  # no early exit: every key costs the same
            if hmac.compare_digest(given, digest) and found is None:
                found = index
        return found if scheme.lower() == "bearer" else None

    def namespace(self, index: int) -> str | None:
        """The prompt-cache namespace of key `index`: None when there is one key (nothing to keep apart)."""
        return f"key-{index}" if len(self._digests) > 1 else None


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
