"""Benchmark (not a test): how the telemetry key frame grows with the length of a session.

A key frame (the first event of an SSE stream, engine/wire.py) carries every cell of the
layer x expert grid exactly. This replays skewed (Zipf-like, exponent 0.8) top-k routing at
Qwen3.5-397B-A17B's shape, with 30% of uses missing and the most recently used quarter
resident, and prints the key frame's JSON bytes after each of `--steps` decode steps: as
sent, with the ages capped at 255 steps back, and with no ages at all (the counts and the
residency alone: what this codec cannot go below while the counts stay exact), and
`floor_bytes`, an estimate of what any exact encoding needs (as base85 text, as the codec
sends it): the entropy of the hit and miss counts (binomial) and of the last use's
age (geometric), from each expert's use rate, every cell taken as independent, plus one bit
of residency per cell; the last miss is left out, so the true floor is higher.

    python -m outlier_tui.bench.key_frame [--steps 100,1000,3000,10000,30000]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np

from engine.api import EngineState, TelemetrySnapshot
from engine.wire import snapshot_to_json
from outlier_tui.bench.scale import frame_bytes


def key_frame_growth(
    steps: list[int], layers: int = 60, experts: int = 512, top_k: int = 10, seed: int = 0
) -> list[dict[str, Any]]:
    """Key frame bytes after each of `steps` decode steps: exact, ages capped, counts only."""
    rng = np.random.default_rng(seed)
    log_popularity = -0.8 * np.log(np.arange(1, experts + 1))
    grid = np.zeros((layers, experts), np.int64)
    hits, misses, last_use, last_miss = grid.copy(), grid.copy(), grid.copy(), grid.copy()
    rows = np.arange(layers)[:, None]
    out = []

    def size(step: int, resident: np.ndarray, used: np.ndarray, missed: np.ndarray) -> int:
        snapshot = TelemetrySnapshot(
            state=EngineState.GENERATING,
            step=step,
            moe_layers=tuple(range(layers)),
            hits=hits,
            misses=misses,
            resident=resident,
            last_use_step=used,
            last_miss_step=missed,
        )
        return frame_bytes(snapshot_to_json(snapshot))

    uses = np.zeros(experts)
    marks = set(steps)
    for step in range(1, max(steps) + 1):
        # top-k without replacement in proportion to popularity (the Gumbel top-k trick)
        chosen = np.argpartition(-(log_popularity + rng.gumbel(size=(layers, experts))), top_k, axis=1)[:, :top_k]
        missed = rng.random((layers, top_k)) < 0.3
        hits[rows, chosen] += ~missed
        misses[rows, chosen] += missed
        last_use[rows, chosen] = step
        np.add.at(uses, chosen.reshape(-1), 1)
        at, k = np.nonzero(missed)
        last_miss[at, chosen[at, k]] = step
        if step in marks:
            resident = np.argsort(np.argsort(-last_use, axis=1, kind="stable"), axis=1) < experts // 4
            out.append(
                {
                    "steps": step,
                    "exact_bytes": size(step, resident, last_use, last_miss),
                    "ages_capped_255_bytes": size(step, resident, *_capped(last_use, last_miss, oldest=step - 255)),
                    "counts_and_residency_bytes": size(step, resident, grid, grid),
                    "floor_bytes": floor_bytes(step, uses / (step * layers), layers),
                }
            )
    return out


def _capped(*steps: np.ndarray, oldest: int) -> list[np.ndarray]:
    """Steps older than `oldest` moved up to it (0, never, stays 0)."""
    return [np.where(s > 0, np.maximum(s, oldest), 0) for s in steps]


def floor_bytes(steps: int, rates: np.ndarray, layers: int) -> int:
    """Bits an exact key frame must carry after `steps` steps (see the module's docstring),
    as base85 bytes; rates: each expert's chance of being used at a step, as in every layer."""
    bits = 0.0
    for rate in rates:
        if rate <= 0:
            continue
        bits += _binomial_bits(steps, 0.7 * rate) + _binomial_bits(steps, 0.3 * rate)
        bits += min(_geometric_bits(rate), math.log2(steps + 1))
    cells = layers * len(rates)
    return int((layers * bits + cells) / 8 * 5 / 4)


def _binomial_bits(n: int, p: float) -> float:
    mean, spread = n * p, math.sqrt(n * p * (1 - p))
    k = np.arange(max(0, int(mean - 12 * spread - 5)), min(n, int(mean + 12 * spread + 6)) + 1)
    log_pmf = (
        math.lgamma(n + 1)
        - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in k])
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    pmf = np.exp(log_pmf)
    pmf = pmf[pmf > 0]
    return float(-(pmf * np.log2(pmf)).sum())


def _geometric_bits(p: float) -> float:
    return (-(1 - p) * math.log2(1 - p) - p * math.log2(p)) / p if p < 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="100,1000,3000,10000,30000", help="comma-separated step counts")
    args = parser.parse_args(argv)
    for row in key_frame_growth(sorted(int(s) for s in args.steps.split(","))):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
