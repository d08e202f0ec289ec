"""Whether to read the next layer's guessed experts while decoding, judged from what
decoding measures.

A right guess hides a read behind the current layer's compute; a wrong one reads an expert
no one asked for. When the disk has idle time (reads are a small part of a token) wrong
guesses cost nothing and prefetch wins (+8% decode tok/s unthrottled at 25% on the demo);
when reads are bandwidth-bound every wasted byte is time (-13% at 25 MB/s). So prefetch
is on while the wrong guesses' read time per token is under half the token's compute:

    wasted reads per token x one expert read  <  margin x (token time - time waiting on reads)

The wrong guesses are counted whether prefetch is on or off: off, each decode step's guess is
still made and checked against the next layer's choice (ExpertCache.shadow_prefetch), so no
window has to run with prefetch on to find out that it loses. Decoding starts with it off:
a probe window with it on cost 5% of decode time at 25 MB/s (session 4's full run). It
turns on after two windows in a row under the margin and off after one over: in session 5's
full run one cheap window (0.05 s against 0.12) turned it on at 25% for four tokens that
wasted 0.44 s of reads each; unthrottled the count is steady (0.01 s against 0.2). One
read's price is what decoding measures (the reader's busy time per byte read, per token), not
only the load-time figure: at 10% budget and 25 MB/s a load-time read of 3 ms (before the cap
showed) priced 7 wrong guesses per token at 0.02 s instead of 0.46 s.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class DecodePrefetchJudge:
    read_s: float  # one expert read: timed at load (ExpertStreamer.decide_prefetch), then as decoding measures it
    window: int = 4  # decode tokens per judgement
    margin: float = 0.5
    # windows in a row under the margin before it turns on (one over turns it off): a wrong
    # "on" costs about twice the compute per token when bandwidth-bound, a wrong "off" only the
    # overlap, and the wasted count varies 3x between windows of one answer
    confirm: int = 2
    on: bool = False  # the setting now
    wasted_per_token: float | None = None  # median of the last window
    # per judged window: (prefetch on next, wasted-guess read s per token, median compute s)
    history: list[tuple[bool, float | None, float]] = field(default_factory=list)
    _compute: list[float] = field(default_factory=list)
    _wasted: list[float] = field(default_factory=list)
    _read: list[float] = field(default_factory=list)
    _below: int = 0  # windows in a row whose cost was under the margin

    def add_token(self, token_s: float, io_wait_s: float, wasted_reads: int, read_s: float | None = None) -> bool:
        """One decode token's wall time, its wait on reads, its wrong guesses (read, or counted
        only while prefetch is off) and, where it read anything, what one expert read cost
        during it (the disk's busy time per byte: a bandwidth cap shows there, not in the
        load-time figure); returns the setting for the next token."""
        self._compute.append(max(token_s - io_wait_s, 0.0))
        self._wasted.append(float(wasted_reads))
        if read_s is not None:
            self._read.append(read_s)
        if len(self._compute) >= self.window:
            self._judge()
        return self.on

    @property
    def cost_s(self) -> float | None:
        """Read time per token of the wrong guesses, from the last window."""
        return None if self.wasted_per_token is None else self.wasted_per_token * self.read_s

    def _judge(self) -> None:
        compute = statistics.median(self._compute)
        self.wasted_per_token = statistics.median(self._wasted)
        if self._read:
            self.read_s = statistics.median(self._read)
        self._compute, self._wasted, self._read = [], [], []
        cost = self.cost_s
        self._below = self._below + 1 if cost is not None and cost < self.margin * compute else 0
        self.on = self._below >= (1 if self.on else self.confirm)
        self.history.append((self.on, cost, compute))
