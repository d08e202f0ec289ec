"""A streaming writer for (sharded) safetensors checkpoints.

The whole tensor list is known up front (names, dtypes, shapes), so each
shard's header is written first and the tensors are then streamed into it one
at a time: a multi-GB checkpoint is written without holding it in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from engine.dtypes import TensorSpec, tag_of_numpy


def plan_shards(specs: dict[str, TensorSpec], shards: int) -> list[dict[str, TensorSpec]]:
    """Split specs (name -> spec), in order, into at most `shards` runs of about equal bytes."""
    total = sum(s.nbytes for s in specs.values()) or 1
    out: list[dict[str, TensorSpec]] = [{} for _ in range(max(1, shards))]
    offset = 0
    for name, spec in specs.items():
        out[min(len(out) - 1, offset * len(out) // total)][name] = spec
        offset += spec.nbytes
    return [s for s in out if s]


def _header(specs: dict[str, TensorSpec]) -> bytes:
    meta: dict = {"__metadata__": {"format": "mlx"}}
    offset = 0
    for name, spec in specs.items():
        meta[name] = {
            "dtype": spec.dtype,
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + spec.nbytes],
        }
        offset += spec.nbytes
    raw = json.dumps(meta, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


def write_checkpoint(
    out_dir: Path,
    specs: dict[str, TensorSpec],
    tensors: Iterable[tuple[str, np.ndarray]],
    shards: int = 1,
    on_tensor=None,
) -> list[str]:
    """Write `tensors` (yielded in the order of `specs`) as model.safetensors
    (shards=1) or as about equal model-0000i-of-0000n.safetensors shards plus
    model.safetensors.index.json.
    on_tensor(bytes_written_so_far, total_bytes) is called after each tensor.
    Returns the file names written."""
    runs = plan_shards(specs, shards)
    n = len(runs)
    names = ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    total = sum(s.nbytes for s in specs.values())
    written = 0
    it: Iterator[tuple[str, np.ndarray]] = iter(tensors)
    weight_map: dict[str, str] = {}
    for shard, fname in zip(runs, names):
        with open(out_dir / fname, "wb") as f:
            f.write(_header(shard))
            for planned, spec in shard.items():
                name, array = next(it)
                if name != planned:
                    raise ValueError(f"tensor {name} arrived where {planned} was planned")
                array = np.ascontiguousarray(array)
                if tag_of_numpy(array.dtype) != spec.dtype or tuple(array.shape) != spec.shape:
                    raise ValueError(f"{name}: got {array.dtype}{array.shape}, planned {spec.dtype}{spec.shape}")
                f.write(array.data.cast("B"))
                weight_map[name] = fname
                written += spec.nbytes
                if on_tensor is not None:
                    on_tensor(written, total)
    if next(it, None) is not None:
        raise ValueError("more tensors than planned")
    if n > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return names
