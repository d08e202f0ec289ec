"""The prefetch variants the I/O-bound study measures, by name: today's
prefetch (decode only, issued after this layer's reads, one FIFO queue, wrong
guesses kept at the hot end), each mechanism added to it alone, and all of them."""

from __future__ import annotations

from engine.expert_streamer import PrefetchMode

_TODAY = dict(enabled=True, prefill=False, early=False, demand_first=False, cancel_stale=False, cold_admit=False)
MECHANISMS = {  # name -> the PrefetchMode field it turns on
    "prefill": "prefill",
    "early": "early",
    "demand-first": "demand_first",
    "cancel-stale": "cancel_stale",
    "cold-admit": "cold_admit",
}
PREFETCH_VARIANTS: dict[str, PrefetchMode] = {
    "today": PrefetchMode(**_TODAY),
    **{f"today+{name}": PrefetchMode(**{**_TODAY, field: True}) for name, field in MECHANISMS.items()},
    "all": PrefetchMode(enabled=True, cold_admit=True),
    "default": PrefetchMode(enabled=True),  # every mechanism kept (cold admission measured, dropped)
}
