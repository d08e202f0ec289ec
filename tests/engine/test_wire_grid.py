"""The compact telemetry encoding (engine/wire.py): what the server's SSE stream sends and
the remote backend decodes. Key frames and deltas round-trip every array exactly; a
delta on a frame the decoder does not have is refused; a malformed grid is a ValueError."""

import dataclasses
import json

import numpy as np
import pytest

from engine.api import EngineState, TelemetrySnapshot
from engine.wire import TelemetryDecoder, TelemetryEncoder, snapshot_from_json, snapshot_to_json


def scale_snapshots(tokens: int, layers: int = 60, experts: int = 512, top_k: int = 10, seed: int = 0):
    """A snapshot after each of `tokens` decode steps with a skewed (Zipf-like) expert popularity, as real
    routers have, and an LRU-ish resident set of a quarter of the experts."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, experts + 1) ** 0.8
    popularity /= popularity.sum()
    hits = np.zeros((layers, experts), np.int64)
    misses = np.zeros_like(hits)
    last_use = np.zeros_like(hits)
    last_miss = np.zeros_like(hits)
    for step in range(1, tokens + 1):
        for layer in range(layers):
            chosen = rng.choice(experts, top_k, replace=False, p=popularity)
            missed = chosen[rng.random(top_k) < 0.3]
            hits[layer, chosen] += 1
            hits[layer, missed] -= 1
            misses[layer, missed] += 1
            last_use[layer, chosen] = step
            last_miss[layer, missed] = step
        resident = np.argsort(np.argsort(-last_use, axis=1, kind="stable"), axis=1) < experts // 4
        yield TelemetrySnapshot(
            state=EngineState.GENERATING,
            step=step,
            moe_layers=tuple(range(layers)),
            hits=hits.copy(),
            misses=misses.copy(),
            resident=resident,
            last_use_step=last_use.copy(),
            last_miss_step=last_miss.copy(),
        )


def scale_snapshot(tokens: int, **kwargs) -> TelemetrySnapshot:
    *_, last = scale_snapshots(tokens, **kwargs)
    return last


ARRAYS = ("hits", "misses", "resident", "last_use_step", "last_miss_step")


def _same(got: TelemetrySnapshot, want: TelemetrySnapshot) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        assert getattr(got, name).dtype == getattr(want, name).dtype
    assert (got.step, got.moe_layers, got.state) == (want.step, want.moe_layers, want.state)


def _text(frame: dict) -> str:
    return json.dumps(frame, separators=(",", ":"))


def test_key_frame_round_trips_exactly():
    snap = scale_snapshot(300, layers=6, experts=64, top_k=4)
    _same(snapshot_from_json(json.loads(_text(snapshot_to_json(snap)))), snap)


def test_a_stream_of_deltas_round_trips_exactly():
    encoder, decoder = TelemetryEncoder(), TelemetryDecoder()
    frames = []
    for i, snap in enumerate(scale_snapshots(40, layers=6, experts=64, top_k=4)):
        if i % 3 == 2:  # not every step is sent: a delta spans several steps
            continue
        frame = json.loads(_text(encoder.encode(snap)))
        frames.append(frame)
        _same(decoder.decode(frame), snap)
    assert "base" not in frames[0]["grid"] and all(f["grid"]["base"] == f["grid"]["seq"] - 1 for f in frames[1:])
    assert frames[-1]["grid"]["cells"] < 6 * 64  # only what changed
    with pytest.raises(ValueError, match="delta"):
        TelemetryDecoder().decode(frames[-1])  # a client that missed the frame before
    with pytest.raises(ValueError, match="delta"):
        decoder.decode(frames[-2])  # out of order


def test_reshaped_grid_starts_a_new_key_frame():
    encoder, decoder = TelemetryEncoder(), TelemetryDecoder()
    decoder.decode(encoder.encode(scale_snapshot(3, layers=2, experts=8, top_k=2)))
    other = scale_snapshot(3, layers=3, experts=8, top_k=2)
    frame = encoder.encode(other)
    assert "base" not in frame["grid"]
    _same(decoder.decode(frame), other)


def test_wide_counts_keep_every_bit():
    snap = scale_snapshot(2, layers=2, experts=8, top_k=2)
    big = snap.hits.copy()
    big[0, 0], big[1, 7] = 2**40 + 3, 70_000
    back = snapshot_from_json(json.loads(_text(snapshot_to_json(dataclasses.replace(snap, hits=big)))))
    np.testing.assert_array_equal(back.hits, big)


def test_headline_scale_frames_are_compact():
    """60 x 512, top-10 (Qwen3.5-397B's routing shape): a decode step's delta is a few KB,
    and the key frame is far smaller than the 0.5+ MB of JSON lists."""
    encoder = TelemetryEncoder()
    sizes = [len(_text(encoder.encode(s))) for s in scale_snapshots(60)]
    assert max(sizes[1:]) <= 8 * 1024, max(sizes[1:])
    assert sizes[0] <= 64 * 1024


def test_empty_and_old_format_snapshots_decode():
    back = snapshot_from_json(json.loads(_text(snapshot_to_json(TelemetrySnapshot(state=EngineState.IDLE, step=0)))))
    assert back.hits.shape == (0, 0) and back.state is EngineState.IDLE
    old = {"state": "idle", "step": 2, "moe_layers": [0], "hits": [[1, 0]], "misses": [[0, 1]]}
    old |= {"resident": [[True, False]], "last_use_step": [[2, 0]], "last_miss_step": [[0, 1]]}
    snap = snapshot_from_json(old)
    assert snap.hits.tolist() == [[1, 0]] and snap.resident.tolist() == [[True, False]]


def test_an_older_servers_version_1_key_frame_decodes():
    """Version 1 (base64; the last miss counted back from `step`), written here by hand."""
    import base64
    import zlib

    snap = scale_snapshot(30, layers=3, experts=16, top_k=3)
    step = snap.step

    def back(last):
        return np.where(last > 0, step - last + 1, 0).astype(np.uint8).reshape(-1)

    columns = [snap.hits.astype(np.uint8).reshape(-1), snap.misses.astype(np.uint8).reshape(-1)]
    columns += [back(snap.last_use_step), back(snap.last_miss_step)]
    raw = b"".join(c.tobytes() for c in columns) + np.packbits(snap.resident.reshape(-1)).tobytes()
    grid = {"v": 1, "shape": [3, 16], "cells": None, "widths": [1, 1, 1, 1], "seq": 1}
    grid["data"] = base64.b64encode(zlib.compress(raw)).decode()
    frame = snapshot_to_json(snap) | {"grid": grid}
    _same(snapshot_from_json(json.loads(_text(frame))), snap)


@pytest.mark.parametrize(
    "grid",
    [
        {"v": 3, "shape": [1, 1], "widths": [1, 1, 1, 1], "data": ""},
        {"v": 2, "shape": [1, 1], "widths": [1, 1, 1, 1], "data": "not base85\\"},
        {"v": 1, "shape": [1, 1], "widths": [1, 1, 1, 1], "data": "not base64!"},
        {"v": 1, "shape": [9, 9], "widths": [1, 1, 1, 1], "data": "eJwDAAAAAAE="},
        {"v": 1, "shape": [1, 1], "widths": [3, 1, 1, 1], "data": "eJwDAAAAAAE="},
        {"v": 1, "shape": [1, 1]},
        {"v": 1, "shape": [1, 1], "widths": [1, 1, 1, 1], "data": 5},
    ],
)
def test_malformed_grid_is_a_value_error(grid):
    with pytest.raises(ValueError):
        snapshot_from_json({"state": "idle", "step": 1, "moe_layers": [0], "grid": grid})
