"""The expert-cache heatmap: one strip per row of layers, one cell per bin of experts.

Cells: background = how much of the bin is resident and how hot its resident
experts are (recently used, often hit); "·" = used before but evicted; a "▪"
in the miss colour = a miss since the previous frame (at least the latest step). Right of each row: that row's hit rate.
Fed by `show(snapshot)` from the app's telemetry timer, never per token.
"""

from __future__ import annotations

import math
from enum import IntEnum

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.color import Color, ColorParseError
from textual.strip import Strip
from textual.theme import Theme
from textual.widget import Widget

from engine.api import EngineState, TelemetrySnapshot
from outlier_tui.app.heatmap_grid import HeatGrid, compute_grid

HEAT_LEVELS = 8
RESIDENT_LEVELS = 4
MISS_GLYPH = "▪"
EVICTED_GLYPH = "·"


class CellKind(IntEnum):
    """What a cell shows; an int, as the hundreds digit of a cell code (numpy computes codes)."""

    EMPTY = 0  # no expert of the bin was ever used
    EVICTED = 1  # used before, none resident now
    MISS = 2  # a miss since the previous frame, none resident
    RESIDENT = 3
    RESIDENT_MISS = 4  # resident, and a miss since the previous frame


def cell_codes(heat: np.ndarray, resident: np.ndarray, missed: np.ndarray, used: np.ndarray) -> np.ndarray:
    """One int per cell: kind * 100 + heat level * 10 + resident level (equal code, equal look)."""
    h = np.minimum((heat * HEAT_LEVELS).astype(np.int64), HEAT_LEVELS - 1)
    r = np.minimum((resident * RESIDENT_LEVELS).astype(np.int64), RESIDENT_LEVELS - 1)
    kind = np.where(
        resident > 0,
        np.where(missed, CellKind.RESIDENT_MISS, CellKind.RESIDENT),
        np.where(missed, CellKind.MISS, np.where(used, CellKind.EVICTED, CellKind.EMPTY)),
    )
    shading = np.where(resident > 0, h * 10 + r, 0)
    return kind * 100 + shading


class HeatPalette:
    """Rich styles for the heatmap cells, derived from the current theme.

    Resident cells follow a three-stop ramp (heat-warm → heat-mid → heat-hot)
    chosen to stay saturated, and fade toward heat-cold when only part of the
    bin is resident.
    """

    def __init__(self, variables: dict[str, str], base: Style | None = None) -> None:
        def pick(*names: str, default: str) -> Color:
            for name in names:
                try:
                    return Color.parse(variables[name])
                except (KeyError, ColorParseError):
                    continue
            return Color.parse(default)

        self.cold = pick("heat-cold", "panel", default="#202830")
        self.warm = pick("heat-warm", "primary", default="#3070a0")
        self.mid = pick("heat-mid", "success", default="#3fb08a")
        self.hot = pick("heat-hot", "accent", default="#f0c040")
        self.miss = pick("heat-miss", "error", default="#e05060")
        self.text = pick("foreground", default="#e0e0e0")
        self.muted = self.cold.blend(self.text, 0.55)
        self.base = base or Style()  # the widget's own colours, under labels and blanks
        self._cells: dict[tuple[int, int], Style] = {}
        self._by_code: dict[int, tuple[str, Style]] = {}
        self.empty = Style(bgcolor=self.cold.rich_color)
        self.evicted = Style(color=self.muted.rich_color, bgcolor=self.cold.rich_color)
        self.miss_mark = Style(color=self.miss.rich_color, bold=True)
        self.label = self.base + Style(color=self.muted.rich_color)
        self.rate = self.base + Style(color=self.text.rich_color)

    def cell(self, code: int) -> tuple[str, Style]:
        """Glyph and style for a cell code from `cell_codes`."""
        found = self._by_code.get(code)
        if found is None:
            kind, h, r = CellKind(code // 100), (code // 10) % 10, code % 10
            if kind is CellKind.RESIDENT:
                found = (" ", self.resident(h / (HEAT_LEVELS - 1), (r + 0.5) / RESIDENT_LEVELS))
            elif kind is CellKind.RESIDENT_MISS:
                style = self.resident(h / (HEAT_LEVELS - 1), (r + 0.5) / RESIDENT_LEVELS)
                found = (MISS_GLYPH, style + self.miss_mark)
            elif kind is CellKind.MISS:
                found = (MISS_GLYPH, self.empty + self.miss_mark)
            elif kind is CellKind.EVICTED:
                found = (EVICTED_GLYPH, self.evicted)
            else:
                found = (" ", self.empty)
            self._by_code[code] = found
        return found

    @classmethod
    def for_theme(cls, theme: Theme, base: Style | None = None) -> HeatPalette:
        """The palette for `theme` (its generated colours plus its own variables)."""
        return cls({**theme.to_color_system().generate(), **theme.variables}, base)

    def ramp(self, heat: float) -> Color:
        """warm at 0, mid at 0.5, hot at 1."""
        if heat <= 0.5:
            return self.warm.blend(self.mid, heat * 2)
        return self.mid.blend(self.hot, (heat - 0.5) * 2)

    def resident(self, heat: float, fraction: float) -> Style:
        """Background for a bin with `fraction` resident whose resident experts have `heat`."""
        h = min(HEAT_LEVELS - 1, int(heat * HEAT_LEVELS))
        r = min(RESIDENT_LEVELS - 1, int(fraction * RESIDENT_LEVELS))
        key = (h, r)
        style = self._cells.get(key)
        if style is None:
            colour = self.ramp(h / (HEAT_LEVELS - 1))
            paleness = 0.6 * (1 - (r + 1) / RESIDENT_LEVELS)
            style = self._cells[key] = Style(bgcolor=colour.blend(self.cold, paleness).rich_color)
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
        same = (
            previous is not None
            and previous.step == snapshot.step
            and previous.hits.shape == snapshot.hits.shape
            and previous.moe_layers == snapshot.moe_layers
            and previous.telemetry_note == snapshot.telemetry_note
        )
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
        return self._lines[y] if y < len(self._lines) else Strip.blank(width, self.rich_style)

    # ---- building the frame ------------------------------------------------

    def _build(self, width: int, height: int) -> list[Strip]:
        if self._palette is None:
            self._palette = HeatPalette.for_theme(self.app.current_theme, self.rich_style)
        pal = self._palette
        snap = self._snapshot
        layers, experts = snap.hits.shape if snap is not None and snap.hits.ndim == 2 else (0, 0)
        if snap is None or layers == 0 or experts == 0:
            note = (
                "No model loaded"
                if snap is None or snap.state in (EngineState.EMPTY, EngineState.ERROR)
                else snap.telemetry_note or "Waiting for telemetry"
            )
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
        lines.extend(self._rows(grid, label_w, cell_w, width))
        if chrome:
            lines.extend(Strip.blank(width, pal.base) for _ in range(height - 1 - len(lines)))
            lines.append(self._legend(width))  # always on the pane's last line
        return lines

    def _summary(self, grid: HeatGrid, layers: int, experts: int, width: int) -> Strip:
        pal = self._palette
        assert pal is not None
        rate = grid.total_hit_rate
        parts = [f"{layers}×{experts}", "hit --" if math.isnan(rate) else f"hit {rate:.0%}"]
        if grid.experts_per_col > 1:
            parts.append(f"{grid.experts_per_col}/col")
        if grid.layers_per_row > 1:
            parts.append(f"{grid.layers_per_row}L/row")
        text = " · ".join(parts)
        if len(text) > width:
            text = " ".join(parts)
        return Strip([Segment(text[:width], pal.label)]).adjust_cell_length(width, pal.base)

    def _rows(self, grid: HeatGrid, label_w: int, cell_w: int, width: int) -> list[Strip]:
        """One strip per grid row: its label, one Segment per run of equal cells (~10x fewer
        objects than one per cell), its hit rate. The codes and runs of every row come from
        one numpy pass, and a row that fits is built at its exact width (no measuring)."""
        pal = self._palette
        assert pal is not None
        codes = cell_codes(grid.heat, grid.resident, grid.missed, grid.used)
        cols = codes.shape[1]
        changed = np.ones(codes.shape, dtype=bool)  # a run starts at each row's first cell
        changed[:, 1:] = codes[:, 1:] != codes[:, :-1]
        row_runs = np.cumsum(np.count_nonzero(changed, axis=1)).tolist()
        starts = np.flatnonzero(changed)
        run_codes = codes.reshape(-1)[starts].tolist()
        ends = np.append(starts[1:], codes.size)
        lengths = (ends - starts).tolist()
        pad = " " * (cell_w - 1)
        units: dict[int, tuple[str, Style]] = {}  # code -> (one cell's text, style)
        for code in set(run_codes):
            glyph, style = pal.cell(code)
            units[code] = (glyph + pad, style)
        used = label_w + cols * cell_w + 5
        fill = [Segment(" " * (width - used), pal.base)] if used < width else []
        strips, begin = [], 0
        for r, rate in enumerate(grid.hit_rate.tolist()):
            first, _last = grid.row_layers[r]
            segments = [Segment(f"L{first}".ljust(label_w), pal.label)]
            end = row_runs[r]
            segments += [
                Segment(units[code][0] * length, units[code][1])
                for code, length in zip(run_codes[begin:end], lengths[begin:end])
            ]
            begin = end
            segments.append(Segment("   --" if math.isnan(rate) else f"{rate:5.0%}", pal.rate))
            if used <= width and len(segments[0].text) == label_w:
                strips.append(Strip(segments + fill, width))
            else:  # a label or a pane too narrow for the row: measured and cut
                strips.append(Strip(segments).adjust_cell_length(width, pal.base))
        return strips

    def _legend(self, width: int) -> Strip:
        pal = self._palette
        assert pal is not None
        ramp = [Segment(" ", pal.resident(h, 1.0)) for h in (0.0, 0.34, 0.67, 1.0)]
        segments = [
            Segment("idle", pal.label),
            *ramp,
            Segment("hot ", pal.label),
            Segment(MISS_GLYPH, pal.miss_mark),
            Segment("miss ", pal.label),
            Segment(EVICTED_GLYPH, pal.evicted),
            Segment("evicted", pal.label),
        ]
        return Strip(segments).crop(0, width).adjust_cell_length(width, pal.base)
