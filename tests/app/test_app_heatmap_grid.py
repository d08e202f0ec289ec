"""The pure binning behind the heatmap: any model size fits any pane."""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import synthetic_snapshot

from engine.api import TelemetrySnapshot
from outlier_tui.app.heatmap_grid import bin_edges, compute_grid, expert_heat, reduce_bins


def test_bin_edges_cover_everything_in_near_equal_bins():
    edges = bin_edges(512, 20)
    assert edges[0] == 0 and edges[-1] == 512 and len(edges) == 21
    sizes = np.diff(edges)
    assert sizes.min() >= 25 and sizes.max() <= 26


def test_bin_edges_never_make_more_bins_than_items():
    assert list(bin_edges(4, 10)) == [0, 1, 2, 3, 4]
    assert list(bin_edges(0, 10)) == [0]


@pytest.mark.parametrize(
    "how,expected",
    [
        ("max", [[2, 9]]),
        ("sum", [[3, 13]]),
        ("mean", [[1.5, 6.5]]),
        ("any", [[True, True]]),
    ],
)
def test_reduce_bins(how, expected):
    a = np.array([[1, 2, 4, 9]])
    out = reduce_bins(a, bin_edges(4, 2), axis=1, how=how)
    assert out.tolist() == expected


def test_512_experts_and_60_layers_fit_an_80_column_pane():
    snap = synthetic_snapshot()
    grid = compute_grid(snap, rows=8, cols=20, since_step=snap.step - 1)
    assert grid.heat.shape == (8, 20)
    assert grid.experts_per_col == 26 and grid.layers_per_row == 8
    assert grid.row_layers[0] == (0, 6) and grid.row_layers[-1][1] == 59
    rows, cols = bin_edges(60, 8), bin_edges(512, 20)
    block = snap.resident[rows[0] : rows[1], cols[0] : cols[1]]
    assert grid.resident[0, 0] == pytest.approx(block.mean())
    assert grid.used[0, 0] == (snap.last_use_step[rows[0] : rows[1], cols[0] : cols[1]] > 0).any()


def test_misses_marked_only_after_since_step():
    snap = synthetic_snapshot(layers=2, experts=8, step=10)
    last_miss = np.zeros((2, 8), np.int64)
    last_miss[0, 3] = 10
    last_miss[1, 5] = 4
    snap = TelemetrySnapshot(**{**snap.__dict__, "last_miss_step": last_miss})
    latest = compute_grid(snap, rows=2, cols=8, since_step=9)
    assert latest.missed.sum() == 1 and latest.missed[0, 3]
    since_start = compute_grid(snap, rows=2, cols=8, since_step=0)
    assert since_start.missed.sum() == 2
    # since_step at or past the current step still marks the latest step's misses.
    assert compute_grid(snap, rows=2, cols=8, since_step=10).missed[0, 3]


def test_hit_rate_per_row_and_total():
    hits = np.array([[3, 0], [0, 0]])
    misses = np.array([[1, 0], [0, 0]])
    snap = TelemetrySnapshot(
        state="idle",
        step=2,
        moe_layers=(1, 3),
        hits=hits,
        misses=misses,
        resident=np.ones((2, 2), bool),
        last_use_step=np.ones((2, 2), np.int64),
        last_miss_step=np.zeros((2, 2), np.int64),
    )
    grid = compute_grid(snap, rows=2, cols=2, since_step=1)
    assert grid.hit_rate[0] == pytest.approx(0.75)
    assert np.isnan(grid.hit_rate[1])
    assert grid.total_hit_rate == pytest.approx(0.75)
    assert grid.row_layers == ((1, 1), (3, 3))  # decoder-layer indices, not positions


def test_heat_prefers_recent_use():
    snap = synthetic_snapshot(layers=1, experts=4, step=100)
    last_use = np.array([[100, 90, 50, 0]])
    snap = TelemetrySnapshot(**{**snap.__dict__, "last_use_step": last_use, "hits": np.zeros((1, 4), np.int64)})
    heat = expert_heat(snap)[0]
    assert heat[0] > heat[1] > heat[2] == heat[3] == 0


def test_empty_snapshot_gives_no_grid():
    assert compute_grid(TelemetrySnapshot(state="empty", step=0), rows=5, cols=5, since_step=0) is None


def test_even_bins_mean_the_same_number_of_experts_per_column():
    from outlier_tui.app.heatmap_grid import even_bin_count

    assert even_bin_count(64, 54) == 32
    assert even_bin_count(512, 20) == 20
    assert even_bin_count(16, 40) == 16
    snap = synthetic_snapshot(layers=30, experts=64)
    grid = compute_grid(snap, rows=30, cols=54, since_step=0)
    assert grid.heat.shape == (30, 32) and grid.experts_per_col == 2


@pytest.mark.parametrize("width", [12, 30, 80, 200])
@pytest.mark.parametrize("cell_w", [1, 3])
def test_heatmap_rows_show_every_cell_as_the_palette_draws_it(width, cell_w):
    """ExpertHeatmap._rows builds runs of equal cells from one numpy pass: each row must read,
    cell by cell, as the palette's glyph and style for that cell's code, at the pane's width."""
    from outlier_tui.app.heatmap import ExpertHeatmap, HeatPalette, cell_codes
    from outlier_tui.app.heatmap_grid import HeatGrid

    rng = np.random.default_rng(width + cell_w)
    rows, cols = 7, 40
    grid = HeatGrid(
        heat=rng.random((rows, cols)),
        resident=np.where(rng.random((rows, cols)) < 0.5, rng.random((rows, cols)), 0.0),
        missed=rng.random((rows, cols)) < 0.2,
        used=rng.random((rows, cols)) < 0.7,
        hit_rate=np.array([np.nan, *rng.random(rows - 1)]),
        row_layers=tuple((i * 9, i * 9 + 8) for i in range(rows)),
        experts_per_col=3,
        layers_per_row=9,
        total_hit_rate=0.5,
    )
    heatmap = ExpertHeatmap()
    heatmap._palette = pal = HeatPalette({})
    label_w = 5
    strips = heatmap._rows(grid, label_w, cell_w, width)
    codes = cell_codes(grid.heat, grid.resident, grid.missed, grid.used)
    for r, strip in enumerate(strips):
        assert strip.cell_length == width
        cells = [(ch, seg.style) for seg in strip for ch in seg.text]
        want = [(ch, pal.label) for ch in f"L{grid.row_layers[r][0]}".ljust(label_w)]
        for code in codes[r].tolist():
            glyph, style = pal.cell(code)
            want += [(glyph, style)] + [(" ", style)] * (cell_w - 1)
        rate = "   --" if np.isnan(grid.hit_rate[r]) else f"{grid.hit_rate[r]:5.0%}"
        want += [(ch, pal.rate) for ch in rate]
        want += [(" ", pal.base)] * (width - len(want))
        assert cells == want[:width]
