"""Telemetry snapshots as JSON: what `outlier serve` streams and the remote client rebuilds.

One codec for both ends, so the remote heatmap and memory panes see exactly the
snapshot the server's engine took. The five layer x expert arrays (30,720 cells
each for Qwen3.5-397B's 60 x 512; ~0.5 MB as JSON lists) travel as one base85
zlib blob under "grid", exact: counts in the narrowest unsigned width that holds
them, bytes shuffled into planes (high bytes compress together), residency as
bits, the last use as a distance back from `step` and the last miss as one back
from the last use.

A stream (`TelemetryEncoder` on the server, `TelemetryDecoder` on the client)
sends one whole grid (a key frame), then only the cells that changed since the
frame before (a delta: a token of a top-10 model changes at most 10 cells per
layer), each frame naming the one it builds on; a decoder that missed it raises
ValueError and the client reconnects for a new key frame.
`snapshot_to_json` / `snapshot_from_json` are the one-frame (key frame) forms. A
snapshot with nested lists (an older server) still decodes.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import zlib
from typing import Any

import numpy as np

from engine.api import EngineState, ModelInfo, TelemetrySnapshot

_ARRAYS = {
    "hits": np.int64,
    "misses": np.int64,
    "resident": bool,
    "last_use_step": np.int64,
    "last_miss_step": np.int64,
}
_COUNTS = ("hits", "misses")
_STEPS = ("last_use_step", "last_miss_step")
GRID_VERSION = 2  # 1: base64, the last miss counted back from `step` (still decoded)
_WIDTHS = (np.uint8, np.uint16, np.uint32, np.uint64)


def snapshot_to_json(snapshot: TelemetrySnapshot) -> dict[str, Any]:
    """A JSON-ready dict: the arrays as one compact key-frame "grid", the model as a dict,
    the state as its string."""
    return TelemetryEncoder().encode(snapshot)


def snapshot_from_json(data: dict[str, Any]) -> TelemetrySnapshot:
    """The inverse of snapshot_to_json; unknown keys (a newer server) are ignored."""
    return TelemetryDecoder().decode(data)


class TelemetryEncoder:
    """One stream's encoder: a key frame first, then deltas against the frame before."""

    def __init__(self) -> None:
        self._previous: dict[str, np.ndarray] | None = None
        self._seq = 0

    def encode(self, snapshot: TelemetrySnapshot) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(snapshot):
            value = getattr(snapshot, f.name)
            if isinstance(value, np.ndarray):
                continue  # in "grid"
            if isinstance(value, EngineState):
                value = value.value
            elif isinstance(value, ModelInfo):
                value = dataclasses.asdict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        arrays = {name: np.asarray(getattr(snapshot, name)) for name in _ARRAYS}
        self._seq += 1
        base = self._previous if self._previous is not None else None
        if base is not None and base["hits"].shape == arrays["hits"].shape:
            changed = np.flatnonzero(np.logical_or.reduce([(arrays[n] != base[n]).reshape(-1) for n in _ARRAYS]))
            grid = _pack(arrays, snapshot.step, changed)
            grid["base"] = self._seq - 1
        else:
            grid = _pack(arrays, snapshot.step, None)
        grid["seq"] = self._seq
        out["grid"] = grid
        self._previous = {n: a.copy() for n, a in arrays.items()}
        return out


class TelemetryDecoder:
    """One stream's decoder: keeps the last frame's arrays for the deltas built on it."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] | None = None
        self._seq: int | None = None

    def decode(self, data: dict[str, Any]) -> TelemetrySnapshot:
        known = {f.name for f in dataclasses.fields(TelemetrySnapshot)}
        values = {k: v for k, v in data.items() if k in known}
        layers = len(values.get("moe_layers") or ())
        grid = data.get("grid")
        if isinstance(grid, dict):
            arrays, seq = self._apply(grid, int(values.get("step", 0)))
            values.update({n: a.copy() for n, a in arrays.items()})
            self._arrays, self._seq = arrays, seq
        for name, dtype in _ARRAYS.items():
            array = np.asarray(values.get(name, []), dtype=dtype)
            values[name] = array.reshape(layers, -1) if array.size else np.zeros((layers, 0), dtype)
        values["moe_layers"] = tuple(values.get("moe_layers") or ())
        values["state"] = EngineState(values["state"])  # ValueError for a state this client does not know
        values["model"] = model_info_from_json(values.get("model"))
        return TelemetrySnapshot(**values)

    def _apply(self, grid: dict[str, Any], step: int) -> tuple[dict[str, np.ndarray], int | None]:
        seq = grid.get("seq")
        if "base" not in grid:
            return _unpack(grid, step, None), seq
        if self._arrays is None or grid["base"] != self._seq:
            raise ValueError(f"telemetry delta on frame {grid['base']}, but the last frame here is {self._seq}")
        return _unpack(grid, step, self._arrays), seq


def _narrow(values: np.ndarray) -> np.ndarray:
    top = int(values.max()) if values.size else 0
    return values.astype(next(d for d in _WIDTHS if top <= np.iinfo(d).max))


def _planes(values: np.ndarray) -> bytes:
    flat = values.reshape(-1)
    return flat.view(np.uint8).reshape(-1, flat.itemsize).T.tobytes()


def _pack(arrays: dict[str, np.ndarray], step: int, cells: np.ndarray | None) -> dict[str, Any]:
    """Key frame (cells None): every cell; delta: the cells listed, as gaps from the last."""
    pick = (lambda a: a.reshape(-1)) if cells is None else (lambda a: a.reshape(-1)[cells])
    columns: list[np.ndarray] = []
    if cells is not None:
        columns.append(np.diff(cells, prepend=-1))  # gaps >= 1
    columns += [pick(arrays[n]) for n in _COUNTS]
    # 0: never; last use: how many steps back, plus one; last miss: how many steps before
    # the last use (a miss is a use, and it is most often the same step), plus one
    used, missed = (pick(arrays[name]).astype(np.int64) for name in _STEPS)
    columns.append(np.where(used > 0, np.maximum(step - used, 0) + 1, 0))
    columns.append(np.where(missed > 0, np.maximum(used - missed, 0) + 1, 0))
    parts = [_narrow(np.asarray(c, np.int64)) for c in columns]
    if min((int(c.min()) for c in columns if c.size), default=0) < 0:
        raise ValueError("telemetry counts must not be negative")
    resident = np.packbits(pick(arrays["resident"]).astype(bool))
    blob = zlib.compress(b"".join(_planes(p) for p in parts) + resident.tobytes(), 6)
    return {
        "v": GRID_VERSION,
        "shape": list(arrays["hits"].shape),
        "cells": None if cells is None else len(cells),
        "widths": [p.itemsize for p in parts],
        "data": base64.b85encode(blob).decode("ascii"),  # JSON-safe, 5 chars per 4 bytes
    }


def _unpack(grid: dict[str, Any], step: int, base: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The arrays of a frame; a delta's over a copy of `base`. ValueError if malformed."""
    try:
        version = grid["v"]
        if version not in (1, GRID_VERSION):
            raise ValueError(f"telemetry grid version {version} is not {GRID_VERSION}")
        layers, experts = (int(n) for n in grid["shape"])
        widths = [int(w) for w in grid["widths"]]
        count = layers * experts if base is None else int(grid["cells"])
        text = grid["data"]
        blob = base64.b64decode(text, validate=True) if version == 1 else base64.b85decode(text)
        raw = zlib.decompress(blob)
    except (KeyError, TypeError, zlib.error, binascii.Error, ValueError) as exc:
        raise ValueError(f"malformed telemetry grid ({exc})") from None
    columns = len(_COUNTS) + len(_STEPS) + (base is not None)
    total = layers * experts
    if (
        min(layers, experts, count) < 0
        or count > total
        or len(widths) != columns
        or any(w not in (1, 2, 4, 8) for w in widths)
        or len(raw) != count * sum(widths) + (count + 7) // 8
    ):
        raise ValueError("telemetry grid sizes do not match its shape")
    if base is not None and base["hits"].shape != (layers, experts):
        raise ValueError("telemetry delta for another grid shape")
    parts, at = [], 0
    for width in widths:
        planes = np.frombuffer(raw, np.uint8, count * width, at).reshape(width, count).T.copy()
        parts.append(planes.view(f"<u{width}").reshape(-1).astype(np.int64))
        at += count * width
    resident = np.unpackbits(np.frombuffer(raw, np.uint8, (count + 7) // 8, at), count=count).astype(bool)
    if base is None:
        cells = np.arange(total)
        out = {n: np.zeros(total, dt) for n, dt in _ARRAYS.items()}
    else:
        cells = np.cumsum(parts.pop(0)) - 1
        if cells.size and cells[-1] >= total:
            raise ValueError("telemetry delta names a cell outside the grid")
        out = {n: base[n].reshape(-1).copy() for n in _ARRAYS}
    for name, values in zip(_COUNTS, parts):
        out[name][cells] = values
    used_back, missed_back = parts[len(_COUNTS) :]
    used = np.where(used_back > 0, step - used_back + 1, 0)
    out["last_use_step"][cells] = used
    if version == 1:  # an older server: the last miss counted back from `step` too
        out["last_miss_step"][cells] = np.where(missed_back > 0, step - missed_back + 1, 0)
    else:
        out["last_miss_step"][cells] = np.where(missed_back > 0, used - missed_back + 1, 0)
    out["resident"][cells] = resident
    return {n: a.reshape(layers, experts) for n, a in out.items()}


def model_info_from_json(data: dict[str, Any] | None) -> ModelInfo | None:
    if not data:
        return None
    known = {f.name for f in dataclasses.fields(ModelInfo)}
    values = {k: v for k, v in data.items() if k in known}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return ModelInfo(**values)
