"""The scale benchmark's parts on a small copy of its checkpoint (4 layers x 16 experts):
the Qwen3.5-shaped checkpoint loads and streams with tokens equal to mlx-lm's, and every
figure the benchmark reports is computed. (The figures themselves: bench/RESULTS.md.)"""

from outlier_tui.bench import scale


def test_scale_parts_on_a_small_shape(tmp_path):
    path = scale.build_checkpoint(tmp_path / "m", layers=4, experts=16, top_k=2)
    index = scale.index_memory(path)
    assert index["kept_bytes"] > 0 and index["open_s"] > 0
    decode = scale.decode_race(path, tokens=3, rounds=1)
    assert decode["tokens_equal_mlx_lm"] and decode["model"]["experts"] == 16
    assert decode["model"]["moe_layers"] == 4 and decode["ratio_median"] > 0
    host, snapshots = scale.host_and_telemetry(path, tokens=3)
    assert host["host_ms_per_layer_per_token"] > 0
    wire = scale.wire_sizes(snapshots)
    assert wire["frames"] == len(snapshots) and wire["delta_bytes_per_step_median"] > 0


def test_key_frame_growth_on_a_small_shape():
    from outlier_tui.bench.key_frame import key_frame_growth

    rows = key_frame_growth([5, 50], layers=3, experts=32, top_k=4)
    assert [r["steps"] for r in rows] == [5, 50]
    for r in rows:  # the counts alone cannot take more room than the whole frame
        assert 0 < r["counts_and_residency_bytes"] <= r["exact_bytes"] and r["floor_bytes"] > 0
        assert r["ages_capped_255_bytes"] == r["exact_bytes"]  # nothing is older than 255 steps yet
    assert rows[1]["exact_bytes"] > rows[0]["exact_bytes"]  # larger counts, more distinct ages
