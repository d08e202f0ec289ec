"""Telemetry snapshots as JSON: what `outlier serve` streams and the remote client rebuilds.

One codec for both ends so the remote heatmap and memory panes see exactly
the snapshot the server's engine took.
"""

from __future__ import annotations

import dataclasses
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


def snapshot_to_json(snapshot: TelemetrySnapshot) -> dict[str, Any]:
    """A JSON-ready dict: arrays as nested lists, the model as a dict, the state as its string."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(snapshot):
        value = getattr(snapshot, f.name)
        if isinstance(value, EngineState):
            value = value.value
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, ModelInfo):
            value = dataclasses.asdict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def snapshot_from_json(data: dict[str, Any]) -> TelemetrySnapshot:
    """The inverse of snapshot_to_json; unknown keys (a newer server) are ignored."""
    known = {f.name for f in dataclasses.fields(TelemetrySnapshot)}
    values = {k: v for k, v in data.items() if k in known}
    layers = len(values.get("moe_layers") or ())
    for name, dtype in _ARRAYS.items():
        array = np.asarray(values.get(name, []), dtype=dtype)
        values[name] = array.reshape(layers, -1) if array.size else np.zeros((layers, 0), dtype)
    values["moe_layers"] = tuple(values.get("moe_layers") or ())
    values["state"] = EngineState(values["state"])  # ValueError for a state this client does not know
    values["model"] = model_info_from_json(values.get("model"))
    return TelemetrySnapshot(**values)


def model_info_from_json(data: dict[str, Any] | None) -> ModelInfo | None:
    if not data:
        return None
    known = {f.name for f in dataclasses.fields(ModelInfo)}
    values = {k: v for k, v in data.items() if k in known}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return ModelInfo(**values)
