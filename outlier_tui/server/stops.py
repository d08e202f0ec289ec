"""Stop sequences, matched as the answer streams in: O(new text) per token, however long the stops.

Each stop keeps a Knuth-Morris-Pratt state (how much of it the text now ends
with), so a token's text is scanned once and nothing already seen is scanned
again. What may still become a stop (the longest partial match) is held back
and sent once it cannot. The request limits (MAX_STOPS, MAX_STOP_CHARS) bound
the held text and the per-character work.
"""

from __future__ import annotations

from collections import deque

MAX_STOPS = 4  # as the OpenAI API
MAX_STOP_CHARS = 512  # per stop sequence


def _failure(stop: str) -> list[int]:
    """KMP failure table: fail[i] = length of the longest proper border of stop[: i + 1]."""
    fail = [0] * len(stop)
    k = 0
    for i in range(1, len(stop)):
        while k and stop[i] != stop[k]:
            k = fail[k - 1]
        if stop[i] == stop[k]:
            k += 1
        fail[i] = k
    return fail


class StopFilter:
    """Cuts the text before the first stop sequence to appear, holding back what may start one.

    "First" is the stop that completes earliest in the text (as a streaming
    server sees it); of stops completing at the same character, the longest.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = stops
        self._fail = [_failure(s) for s in stops]
        self._state = [0] * len(stops)
        self._held: deque[str] = deque()  # the last max(state) characters, not sent yet
        self.matched: str | None = None  # the stop sequence that ended the answer (Anthropic reports it)

    @property
    def active(self) -> bool:
        return bool(self._stops)

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to send now, whether a stop sequence was reached)."""
        if not self._stops:
            return text, False
        stops, fail, state = self._stops, self._fail, self._state
        for i, ch in enumerate(text):
            found = 0
            for j, stop in enumerate(stops):
                k = state[j]
                while k and stop[k] != ch:
                    k = fail[j][k - 1]
                if stop[k] == ch:
                    k += 1
                if k == len(stop):
                    if k > found:
                        found, self.matched = k, stop
                    k = fail[j][k - 1]
                state[j] = k
            if found:
                seen = "".join(self._held) + text[: i + 1]
                self._held.clear()
                return seen[: len(seen) - found], True
        return self._release(text, max(state)), False

    def _release(self, text: str, keep: int) -> str:
        """Append `text` to the held characters and send all but the last `keep`."""
        held = self._held
        send = len(held) + len(text) - keep
        if send <= len(held):
            out = "".join(held.popleft() for _ in range(send))
            held.extend(text)
            return out
        out = "".join(held) + text[: send - len(held)]
        held.clear()
        held.extend(text[len(text) - keep :] if keep else "")
        return out

    def flush(self) -> str:
        """The held text, once the answer ended without a stop."""
        held = "".join(self._held)
        self._held.clear()
        self._state = [0] * len(self._stops)
        return held
