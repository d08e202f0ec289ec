"""The bench figures: drawn from a run's figures alone (matplotlib), every series on
the image; without matplotlib, `--plot` says how to install it before measuring."""

import json
import struct
import sys

import numpy as np
import pytest

from outlier_tui.bench import plot
from outlier_tui.cli import build_parser
from outlier_tui.commands import bench as bench_command

MACHINE = {"cpu": "Test CPU", "cores": 2, "memory_bytes": 8 * 2**30, "mlx": "0.32.4", "mlx_device": "Device(cpu, 0)"}
MODEL = {
    "model_type": "mixtral",
    "moe_layers": 2,
    "num_experts": 8,
    "top_k": 2,
    "total_expert_bytes": 64 * 2**20,
    "files": ["/models/tiny-moe/model.safetensors"],
}


def _config(budget, prefetch, tok_s, hit, optimal):
    return {
        "budget_percent": budget,
        "prefetch": prefetch,
        "headline": {"decode_tokens_per_s": tok_s, "hit_rate": hit},
        "replay": {"optimal_hit_rate": optimal, "lru_hit_rate": hit},
    }


BENCH = {
    "machine": MACHINE,
    "model": MODEL,
    "resident": {"headline": {"decode_tokens_per_s": 5.0}},
    "configs": [
        _config(100.0, False, 4.9, 1.0, 1.0),
        _config(100.0, True, 4.8, 1.0, 1.0),
        _config(25.0, False, 3.0, 0.6, 0.75),
        _config(25.0, True, 3.5, 0.7, 0.75),
        {"budget_percent": 10.0, "prefetch": False, "error": "failed", "headline": {}},  # a failed run is left out
    ],
}

IO_BOUND = {
    "machine": MACHINE,
    "model": MODEL,
    "settings": {"disk_bytes_per_s": 25_000_000},
    "compute": {"decode_tokens_per_s": 2.0},
    "configs": [
        {
            "budget_percent": 25.0,
            "name": n,
            "s_per_token": s,
            "limit_s_per_token": 0.5,
            "compute_s_per_token": 0.5,
            "optimal_read_s_per_token": 0.3,
            "vs_limit": s / 0.5,
        }
        for n, s in (("off", 1.2), ("default", 0.8), ("today", 0.7))
    ]
    + [{"budget_percent": 10.0, "name": "off", "error": "failed"}],
}


def _png(path):
    """(width, height, RGB pixels) of a PNG, checked to be one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    from matplotlib.image import imread

    pixels = imread(path)[..., :3]
    assert pixels.shape[:2] == (height, width)
    return width, height, pixels


def _pixels_of(pixels, hex_colour):
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(pixels - rgb).max(axis=-1) < 0.02).sum())


def test_bench_figure_draws_every_series(tmp_path):
    out = tmp_path / "bench.png"
    plot.write_plot(BENCH, out)
    width, height, pixels = _png(out)
    assert 1000 <= width <= 2500 and 400 <= height <= 1200
    for colour in (plot.OFF, plot.ON, plot.OPTIMAL, plot.RESIDENT):
        assert _pixels_of(pixels, colour) > 200, colour


def test_io_bound_figure_has_a_bar_per_configuration(tmp_path):
    out = tmp_path / "io.png"
    plot.write_iobound_plot(IO_BOUND, out)
    width, height, pixels = _png(out)
    assert 1000 <= width <= 2500 and 300 <= height <= 1500
    for bar in (plot.OFF, plot.ON, plot.VARIANT):
        assert _pixels_of(pixels, bar) > 1000, bar
    assert _pixels_of(pixels, plot.OPTIMAL) > 30  # the hollow optimal-reads markers


def test_write_any_picks_the_figure_of_the_saved_run(tmp_path):
    plot.write_any(BENCH, tmp_path / "a.png")
    plot.write_any(IO_BOUND, tmp_path / "b.png")
    assert _png(tmp_path / "a.png")[:2] != _png(tmp_path / "b.png")[:2]
    with pytest.raises(ValueError, match="skipped"):
        plot.write_any({"skipped": "not root"}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="not the JSON"):
        plot.write_any({"configs": []}, tmp_path / "c.png")


def _run_bench(argv):
    return bench_command.run(build_parser().parse_args(["bench", *argv]))


def test_replot_redraws_a_saved_run(tmp_path, capsys):
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(BENCH))
    out = tmp_path / "again.png"
    assert _run_bench(["--replot", str(saved), "--plot", str(out)]) == 0
    assert _png(out)[0] >= 1000
    assert _run_bench(["--replot", str(saved)]) == 1
    assert capsys.readouterr().err.strip() == "outlier: --replot needs --plot PATH: where to write the figure"
    saved.write_text("{not json")
    assert _run_bench(["--replot", str(saved), "--plot", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not JSON" in err[0]


def test_plot_without_matplotlib_says_how_to_install_it_before_measuring(tmp_path, monkeypatch, capsys):
    from outlier_tui.bench import orchestrate

    def measure(*args, **kwargs):
        raise AssertionError("the benchmark ran although the figure cannot be drawn")

    monkeypatch.setattr(orchestrate, "run", measure)
    monkeypatch.setattr("outlier_tui.model_choice.resolve_model_dir", measure)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    out = tmp_path / "bench.png"
    for argv in (["--plot", str(out)], ["--io-bound", "--plot", str(out)]):
        assert _run_bench(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["outlier: --plot needs matplotlib, which is not installed: pip install 'outlier[bench]'"]
    assert not out.exists()
