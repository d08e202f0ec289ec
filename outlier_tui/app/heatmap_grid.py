"""Pure numpy reduction of the engine's layer × expert telemetry to a screen grid.

The headline model has 60 MoE layers × 512 experts; a side pane has ~20-90
columns and ~8-45 rows. Experts are binned into columns and, when needed,
layers into rows, keeping for each cell what a user should see: how hot the
hottest expert is, how much of the bin is resident, and whether any expert in
it missed since the last frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.api import TelemetrySnapshot

RECENCY_WINDOW = 32  # steps over which "recently used" fades to "resident"


def bin_edges(n: int, bins: int) -> np.ndarray:
    """Start offsets of `min(n, bins)` nearly equal bins over n items, plus n at the end."""
    if n <= 0:
        return np.zeros(1, np.int64)
    bins = max(1, min(n, bins))
    return (np.arange(bins + 1, dtype=np.int64) * n) // bins


def even_bin_count(n: int, max_bins: int) -> int:
    """How many bins of one size (ceil(n / max_bins)) cover n items.

    64 experts in 54 columns gives 32 bins of 2 rather than a mix of 1s and 2s,
    so every column means the same number of experts.
    """
    if n <= 0 or max_bins <= 0:
        return 1
    per = -(-n // max_bins)
    return -(-n // per)


def reduce_bins(a: np.ndarray, edges: np.ndarray, axis: int, how: str) -> np.ndarray:
    """Reduce `a` over consecutive bins along `axis`: how is max, sum, mean or any."""
    starts = edges[:-1]
    if how == "max":
        return np.maximum.reduceat(a, starts, axis=axis)
    if how == "any":
        return np.logical_or.reduceat(a.astype(bool), starts, axis=axis)
    summed = np.add.reduceat(a.astype(np.float64) if how == "mean" else a, starts, axis=axis)
    if how == "sum":
        return summed
    if how == "mean":
        shape = [1] * a.ndim
        shape[axis] = len(starts)
        return summed / np.diff(edges).reshape(shape)
    raise ValueError(f"unknown reduction {how!r}")


@dataclass(frozen=True)
class HeatGrid:
    """What one frame of the heatmap shows, already binned to the screen."""

    heat: np.ndarray  # [rows, cols] 0..1, mean recency/hit score of the bin's resident experts
    resident: np.ndarray  # [rows, cols] fraction of the bin's experts that are resident
    missed: np.ndarray  # [rows, cols] bool, a miss after `since_step`
    used: np.ndarray  # [rows, cols] bool, any expert of the bin was ever used
    hit_rate: np.ndarray  # [rows] hits / (hits + misses), NaN before any lookup
    row_layers: tuple[tuple[int, int], ...]  # first and last decoder layer of each row
    experts_per_col: int  # the largest bin
    layers_per_row: int
    total_hit_rate: float  # NaN before any lookup


def expert_heat(snapshot: TelemetrySnapshot, window: int = RECENCY_WINDOW) -> np.ndarray:
    """Per expert 0..1: mostly how recently it was used, partly how often it hit."""
    used = snapshot.last_use_step > 0
    age = snapshot.step - snapshot.last_use_step
    recency = np.where(used, np.clip(1.0 - age / float(window), 0.0, 1.0), 0.0)
    hits = snapshot.hits.astype(np.float64)
    top = hits.max() if hits.size else 0.0
    share = np.log1p(hits) / np.log1p(top) if top > 0 else np.zeros_like(hits)
    return 0.7 * recency + 0.3 * share


def compute_grid(
    snapshot: TelemetrySnapshot, rows: int, cols: int, since_step: int, window: int = RECENCY_WINDOW
) -> HeatGrid | None:
    """Bin a snapshot into at most rows × cols cells; None if it has no experts.

    since_step: misses with last_miss_step > since_step are marked (the steps
    the previous frame did not show; at least the latest step).
    """
    layers, experts = snapshot.hits.shape if snapshot.hits.ndim == 2 else (0, 0)
    if layers == 0 or experts == 0 or rows <= 0 or cols <= 0:
        return None
    since_step = min(since_step, snapshot.step - 1)
    col_edges = bin_edges(experts, even_bin_count(experts, cols))
    row_edges = bin_edges(layers, rows)

    def both(a: np.ndarray, how: str) -> np.ndarray:
        return reduce_bins(reduce_bins(a, col_edges, 1, how), row_edges, 0, how)

    # Mean over resident experts, not max: with 200+ experts per cell a max
    # would paint every cell hot.
    resident_count = both(snapshot.resident.astype(np.float64), "sum")
    heat_sum = both(expert_heat(snapshot, window) * snapshot.resident, "sum")
    heat = np.divide(heat_sum, resident_count, out=np.zeros_like(heat_sum), where=resident_count > 0)
    resident = both(snapshot.resident.astype(np.float64), "mean")
    missed = both(snapshot.last_miss_step > max(since_step, 0), "any")
    used = both(snapshot.last_use_step > 0, "any")
    row_hits = reduce_bins(snapshot.hits.sum(axis=1), row_edges, 0, "sum").astype(np.float64)
    row_misses = reduce_bins(snapshot.misses.sum(axis=1), row_edges, 0, "sum").astype(np.float64)
    lookups = row_hits + row_misses
    with np.errstate(invalid="ignore", divide="ignore"):
        hit_rate = np.where(lookups > 0, row_hits / lookups, np.nan)
    total = lookups.sum()
    layer_ids = snapshot.moe_layers if len(snapshot.moe_layers) == layers else tuple(range(layers))
    row_layers = tuple((layer_ids[s], layer_ids[e - 1]) for s, e in zip(row_edges[:-1], row_edges[1:]))
    return HeatGrid(
        heat=heat,
        resident=resident,
        missed=missed,
        used=used,
        hit_rate=hit_rate,
        row_layers=row_layers,
        experts_per_col=int(np.diff(col_edges).max()),
        layers_per_row=int(np.diff(row_edges).max()),
        total_hit_rate=float(row_hits.sum() / total) if total > 0 else float("nan"),
    )
