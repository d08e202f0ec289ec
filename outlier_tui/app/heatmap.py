"""The expert-cache heatmap: one strip per row of layers, one cell per bin of experts.

Cells: background = how hot the bin's hottest resident expert is (recently
used, often hit); "·" = used before but evicted; "▪" on the miss colour = a
miss since the previous frame. Right of each row: that row's hit rate.
Fed by `show(snapshot)` from the app's telemetry timer, never per token.
"""

from __future__ import annotations

import math

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.color import Color, ColorParseError
from textual.strip import Strip
from textual.widget import Widget

from engine.api import TelemetrySnapshot
from outlier_tui.app.heatmap_grid import HeatGrid, compute_grid

HEAT_LEVELS = 8
RESIDENT_LEVELS = 4
MISS_GLYPH = "▪"
EVICTED_GLYPH = "·"


class HeatPalette:
    """Rich styles for the heatmap cells, derived from the current theme."""

    def __init__(self, variables: dict[str, str]) -> None:
        def pick(*names: str, default: str) -> Color:
            for name in names:
                try:
                    return Color.parse(variables[name])
                except (KeyError, ColorParseError):
                    continue
            return Color.parse(default)

        self.cold = pick("heat-cold", "panel", default="#202830")
        self.warm = pick("heat-warm", "primary", default="#3070a0")
        self.hot = pick("heat-hot", "accent", default="#f0c040")
        self.miss = pick("heat-miss", "error", default="#e05060")
        self.text = pick("foreground", default="#e0e0e0")
        self.muted = self.cold.blend(self.text, 0.45)
        self._cells: dict[tuple[int, int], Style] = {}
        self.empty = Style(bgcolor=self.cold.rich_color)
        self.evicted = Style(color=self.muted.rich_color, bgcolor=self.cold.rich_color)
        self.missed = Style(color=self.text.rich_color, bgcolor=self.miss.rich_color, bold=True)
        self.label = Style(color=self.muted.rich_color)
        self.rate = Style(color=self.text.rich_color)

    def resident(self, heat: float, fraction: float) -> Style:
        """Background for a bin with `fraction` resident and hottest expert `heat`."""
        h = min(HEAT_LEVELS - 1, int(heat * HEAT_LEVELS))
        r = min(RESIDENT_LEVELS - 1, int(fraction * RESIDENT_LEVELS))
        key = (h, r)
        style = self._cells.get(key)
        if style is None:
            base = self.cold.blend(self.warm, 0.4 + 0.6 * (r + 1) / RESIDENT_LEVELS)
            colour = base.blend(self.hot, h / (HEAT_LEVELS - 1))
            style = self._cells[key] = Style(bgcolor=colour.rich_color)
        return style


class ExpertHeatmap(Widget):
    """Layers × experts of the expert cache, binned to fit the widget."""

    DEFAULT_CSS = """
    ExpertHeatmap { height: 1fr; min-height: 4; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._snapshot: TelemetrySnapshot | None = None
        self._since_step = 0
        self._palette: HeatPalette | None = None
        self._lines: list[Strip] | None = None
        self._lines_size: tuple[int, int] | None = None
        self.grid: HeatGrid | None = None

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._theme_changed, init=False)

    def _theme_changed(self) -> None:
        self._palette = None
        self._lines = None
        self.refresh()

    def show(self, snapshot: TelemetrySnapshot) -> None:
        """Display a new snapshot; skipped if nothing the map shows has changed."""
        previous = self._snapshot
        same = previous is not None and previous.step == snapshot.step \
            and previous.hits.shape == snapshot.hits.shape \
            and previous.moe_layers == snapshot.moe_layers
        if same:
            # Idle: after one frame showing every miss since the last one,
            # keep marking only the latest step's misses.
            if self._since_step >= snapshot.step - 1:
                return
            self._since_step = snapshot.step - 1
        else:
            self._since_step = previous.step if previous is not None else 0
        self._snapshot = snapshot
        self._lines = None
        self.refresh()

    @property
    def snapshot(self) -> TelemetrySnapshot | None:
        """The snapshot on screen."""
        return self._snapshot

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        if self._lines is None or self._lines_size != (width, height):
            self._lines = self._build(width, height)
            self._lines_size = (width, height)
        return self._lines[y] if y < len(self._lines) else Strip.blank(width)

    # ---- building the frame ------------------------------------------------

    def _build(self, width: int, height: int) -> list[Strip]:
        if self._palette is None:
            self._palette = HeatPalette(self.app.theme_variables)
        pal = self._palette
        snap = self._snapshot
        layers, experts = snap.hits.shape if snap is not None and snap.hits.ndim == 2 else (0, 0)
        if snap is None or layers == 0 or experts == 0:
            note = "No model loaded" if snap is None or snap.state in ("empty", "error") \
                else "Waiting for telemetry"
            return [Strip([Segment(note.center(width)[:width], pal.label)])] if height else []
        chrome = 2 if height >= 5 else 0  # summary line on top, legend at the bottom
        rows = max(1, height - chrome)
        label_w = len(str(max(snap.moe_layers or (layers - 1,)))) + 2
        cols = max(1, width - label_w - 5)
        cell_w = max(1, min(3, cols // experts))  # few experts: wider cells
        grid = compute_grid(snap, rows, cols // cell_w, self._since_step)
        self.grid = grid
        if grid is None:
            return []
        lines: list[Strip] = []
        if chrome:
            lines.append(self._summary(grid, layers, experts, width))
        for r in range(grid.heat.shape[0]):
            lines.append(self._row(grid, r, label_w, cell_w, width))
        if chrome:
            lines.append(self._legend(width))
        return lines

    def _summary(self, grid: HeatGrid, layers: int, experts: int, width: int) -> Strip:
        pal = self._palette
        assert pal is not None
        rate = grid.total_hit_rate
        parts = [f"{layers}×{experts}"]
        if grid.experts_per_col > 1:
            parts.append(f"{grid.experts_per_col}/col")
        if grid.layers_per_row > 1:
            parts.append(f"{grid.layers_per_row} layers/row")
        parts.append("hit --" if math.isnan(rate) else f"hit {rate:.0%}")
        text = " · ".join(parts)
        return Strip([Segment(text[:width], pal.label)]).adjust_cell_length(width)

    def _row(self, grid: HeatGrid, r: int, label_w: int, cell_w: int, width: int) -> Strip:
        pal = self._palette
        assert pal is not None
        first, last = grid.row_layers[r]
        segments = [Segment(f"L{first}".ljust(label_w), pal.label)]
        heat, resident = grid.heat[r], grid.resident[r]
        missed, used = grid.missed[r], grid.used[r]
        pad = " " * (cell_w - 1)
        for c in range(heat.shape[0]):
            if missed[c]:
                segments.append(Segment(MISS_GLYPH + pad, pal.missed))
            elif resident[c] > 0:
                style = pal.resident(float(heat[c]), float(resident[c]))
                segments.append(Segment(" " + pad, style))
            elif used[c]:
                segments.append(Segment(EVICTED_GLYPH + pad, pal.evicted))
            else:
                segments.append(Segment(" " + pad, pal.empty))
        rate = grid.hit_rate[r]
        segments.append(Segment("   --" if np.isnan(rate) else f"{rate:5.0%}", pal.rate))
        return Strip(segments).adjust_cell_length(width)

    def _legend(self, width: int) -> Strip:
        pal = self._palette
        assert pal is not None
        segments = [
            Segment(" ", pal.resident(1.0, 1.0)), Segment("hot ", pal.label),
            Segment(" ", pal.resident(0.0, 1.0)), Segment("cached ", pal.label),
            Segment(MISS_GLYPH, pal.missed), Segment("miss ", pal.label),
            Segment(EVICTED_GLYPH, pal.evicted), Segment("evicted", pal.label),
        ]
        return Strip(segments).crop(0, width).adjust_cell_length(width)
