"""Whether to read the next layer's guessed experts while decoding, judged from what
decoding measures.

A right guess hides a read behind the current layer's compute; a wrong one reads an expert
no one asked for. When the disk has idle time (reads are a small part of a token) wrong
guesses cost nothing and prefetch wins (+8% decode tok/s unthrottled at 25% on the demo);
when reads are bandwidth-bound every wasted byte is time (-13% at 25 MB/s). So prefetch
stays on while the wrong guesses' read time per token is under half the token's compute:

    wasted reads per token x one expert read  <  margin x (token time - time waiting on reads)

The wasted reads are measured while prefetch is on (guesses issued - guesses used), so a
probe window runs with it on at the start and again every `reprobe` windows. One read's price
is what decoding measures (the reader's busy time per byte read, per token), not only the
load-time figure: at 10% budget and 25 MB/s a load-time read of 3 ms (before the cap showed)
priced 7 wrong guesses per token at 0.02 s instead of 0.46 s, and prefetch stayed on. At 25 MB/s on
the demo the probe turned it off after its first window (0.20 s of wasted reads per token
against 0.25 s of compute); unthrottled it stayed on (0.012-0.016 s against 0.23 s).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class DecodePrefetchJudge:
    read_s: float  # one expert read: timed at load (ExpertStreamer.decide_prefetch), then as decoding measures it
    window: int = 4  # decode tokens per judgement: a probe that loses costs this many tokens
    margin: float = 0.5
    reprobe: int = 32  # windows with prefetch off before measuring it again
    on: bool = True  # the setting now: the first window probes
    wasted_per_token: float | None = None  # median of the last window with prefetch on
    # per judged window: (prefetch on next, wasted-guess read s per token, median compute s)
    history: list[tuple[bool, float | None, float]] = field(default_factory=list)
    _compute: list[float] = field(default_factory=list)
    _wasted: list[float] = field(default_factory=list)
    _read: list[float] = field(default_factory=list)
    _windows_off: int = 0

    def add_token(self, token_s: float, io_wait_s: float, wasted_reads: int, read_s: float | None = None) -> bool:
        """One decode token's wall time, its wait on reads, (prefetch on) its wasted guesses and,
        where it read anything, what one expert read cost during it (the disk's busy time per
        byte: a bandwidth cap shows there, not in the load-time figure); returns the setting
        for the next token."""
        self._compute.append(max(token_s - io_wait_s, 0.0))
        if self.on:
            self._wasted.append(float(wasted_reads))
        if read_s is not None:
            self._read.append(read_s)
        if len(self._compute) >= self.window:
            self._judge()
        return self.on

    @property
    def cost_s(self) -> float | None:
        """Read time per token of the wrong guesses, from the last window with prefetch on."""
        return None if self.wasted_per_token is None else self.wasted_per_token * self.read_s

    def _judge(self) -> None:
        compute = statistics.median(self._compute)
        if self.on:
            self.wasted_per_token = statistics.median(self._wasted)
        if self._read:
            self.read_s = statistics.median(self._read)
        self._compute, self._wasted, self._read = [], [], []
        cost = self.cost_s
        if not self.on and self._windows_off + 1 >= self.reprobe:  # disk or routing may have changed
            self.on, self._windows_off = True, 0
        else:
            self._windows_off = 0 if self.on else self._windows_off + 1
            self.on = cost is not None and cost < self.margin * compute
        self.history.append((self.on, cost, compute))
