"""`--plot`: decode tok/s and expert hit rate against cache budget, one PNG,
drawn with bench.png (no plotting library). The resident mlx-lm speed is a
dashed line; the offline-optimal hit rate is drawn next to the engine's."""

from __future__ import annotations

import math
from pathlib import Path

from outlier_tui.bench.png import Canvas

OFF, ON, BASE, GRID, INK = (31, 119, 180), (255, 127, 14), (90, 90, 90), (225, 225, 225), (20, 20, 20)
OPT = (44, 160, 44)


def write_plot(result: dict, path: str | Path) -> None:
    canvas = Canvas(1240, 600)
    model = result["model"]
    canvas.text(
        620,
        14,
        f"outlier bench: {model['model_type']} {model['moe_layers']}x{model['num_experts']} "
        f"experts, top-{model['top_k']}",
        INK,
        2,
        "center",
    )
    configs = [c for c in result["configs"] if c.get("headline")]
    speed = {p: _series(configs, p, "decode_tokens_per_s") for p in (False, True)}
    hits = {p: _series(configs, p, "hit_rate") for p in (False, True)}
    optimal = sorted(
        (c["budget_percent"], c["replay"]["optimal_hit_rate"]) for c in configs if not c["prefetch"] and c.get("replay")
    )
    resident = result["resident"]["headline"].get("decode_tokens_per_s")
    top = max([v for s in speed.values() for _, v in s] + [resident or 0, 1e-9])
    _panel(
        canvas,
        20,
        "DECODE TOK/S",
        [(speed[False], OFF, "PREFETCH OFF"), (speed[True], ON, "PREFETCH ON")],
        top * 1.15,
        (resident, "MLX-LM RESIDENT") if resident else None,
    )
    _panel(
        canvas,
        630,
        "EXPERT HIT RATE",
        [(hits[False], OFF, "PREFETCH OFF"), (hits[True], ON, "PREFETCH ON"), (optimal, OPT, "OPTIMAL (BELADY)")],
        1.0,
        None,
    )
    canvas.save(path)


def _series(configs: list[dict], prefetch: bool, key: str) -> list[tuple[float, float]]:
    return sorted(
        (c["budget_percent"], c["headline"][key]) for c in configs if c["prefetch"] == prefetch and key in c["headline"]
    )


def _panel(canvas: Canvas, left: int, title: str, series, y_max: float, baseline) -> None:
    x0, x1, y0, y1 = left + 80, left + 590, 500, 70  # plot area: x0..x1, bottom y0, top y1
    canvas.text((x0 + x1) / 2, 44, title, INK, 2, "center")
    ticks = _ticks(y_max)
    for t in ticks:
        y = y0 - (y0 - y1) * t / y_max
        canvas.line(x0, y, x1, y, GRID)
        canvas.text(x0 - 8, y - 7, _label(t), INK, 2, "right")
    for b in (0, 10, 25, 50, 75, 100):
        x = x0 + (x1 - x0) * b / 100
        canvas.line(x, y0, x, y0 + 6, INK)
        canvas.text(x, y0 + 12, f"{b}", INK, 2, "center")
    canvas.text((x0 + x1) / 2, y0 + 36, "CACHE BUDGET, % OF ALL EXPERT BYTES", INK, 2, "center")
    canvas.line(x0, y0, x1, y0, INK, 2)
    canvas.line(x0, y0, x0, y1, INK, 2)

    def at(budget: float, value: float) -> tuple[float, float]:
        return x0 + (x1 - x0) * budget / 100, y0 - (y0 - y1) * min(value, y_max) / y_max

    legend = {"x": x0, "y": y0 + 62, "left": x0, "right": x1}  # under the axis title, off the data
    if baseline:
        y = at(0, baseline[0])[1]
        canvas.line(x0, y, x1, y, BASE, 2, dash=8)
        _legend(canvas, legend, BASE, baseline[1])
    for points, color, name in series:
        if not points:
            continue
        xy = [at(b, v) for b, v in points]
        for (ax, ay), (bx, by) in zip(xy, xy[1:]):
            canvas.line(ax, ay, bx, by, color, 3)
        for x, y in xy:
            canvas.dot(x, y, 5, color)
        _legend(canvas, legend, color, name)


def _legend(canvas: Canvas, spot: dict, color, name: str) -> None:
    """One legend entry at spot["x"], spot["y"] (advanced in place, wrapping at spot["right"])."""
    width = 30 + 12 * len(name) + 20
    if spot["x"] + width > spot["right"] and spot["x"] > spot["left"]:
        spot["x"], spot["y"] = spot["left"], spot["y"] + 22
    canvas.rect(spot["x"], spot["y"] + 4, spot["x"] + 22, spot["y"] + 9, color)
    canvas.text(spot["x"] + 30, spot["y"], name, INK, 2)
    spot["x"] += width


def _ticks(y_max: float) -> list[float]:
    raw = y_max / 5
    step = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * step:
            step *= m
            break
    return [i * step for i in range(int(y_max / step) + 1)]


def _label(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == 0 else f"{value:.1f}" if value >= 1 else f"{value:.2g}"
