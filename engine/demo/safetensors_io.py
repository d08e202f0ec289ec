"""A streaming writer for (sharded) safetensors checkpoints.

The whole tensor list is known up front (names, dtypes, shapes), so each
shard's header is written first and the tensors are then streamed into it one
at a time: a multi-GB checkpoint is written without holding it in memory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

_DTYPES = {
    np.dtype(np.uint32): "U32",
    np.dtype(np.uint8): "U8",
    np.dtype(np.float16): "F16",
    np.dtype(np.float32): "F32",
    np.dtype(np.int32): "I32",
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(math.prod(self.shape)) * np.dtype(self.dtype).itemsize


def plan_shards(specs: list[TensorSpec], max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Split specs, in order, into shards of at most max_shard_bytes (a single
    tensor larger than that gets a shard of its own)."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        if shards[-1] and size + spec.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += spec.nbytes
    return shards


def _header(specs: list[TensorSpec]) -> bytes:
    meta: dict = {"__metadata__": {"format": "mlx"}}
    offset = 0
    for spec in specs:
        meta[spec.name] = {
            "dtype": _DTYPES[np.dtype(spec.dtype)],
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + spec.nbytes],
        }
        offset += spec.nbytes
    raw = json.dumps(meta, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


def write_checkpoint(
    out_dir: Path,
    specs: list[TensorSpec],
    tensors: Iterable[tuple[str, np.ndarray]],
    max_shard_bytes: int,
    on_tensor=None,
) -> list[str]:
    """Write `tensors` (yielded in the order of `specs`) as model.safetensors or
    as model-0000i-of-0000n.safetensors shards plus model.safetensors.index.json.
    on_tensor(bytes_written_so_far, total_bytes) is called after each tensor.
    Returns the file names written."""
    shards = plan_shards(specs, max_shard_bytes)
    n = len(shards)
    names = (
        ["model.safetensors"]
        if n == 1
        else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    )
    total = sum(s.nbytes for s in specs)
    written = 0
    it: Iterator[tuple[str, np.ndarray]] = iter(tensors)
    weight_map: dict[str, str] = {}
    for shard, fname in zip(shards, names):
        with open(out_dir / fname, "wb") as f:
            f.write(_header(shard))
            for spec in shard:
                name, array = next(it)
                if name != spec.name:
                    raise ValueError(f"tensor {name} arrived where {spec.name} was planned")
                array = np.ascontiguousarray(array)
                if array.dtype != np.dtype(spec.dtype) or tuple(array.shape) != spec.shape:
                    raise ValueError(
                        f"{name}: got {array.dtype}{array.shape}, planned "
                        f"{np.dtype(spec.dtype)}{spec.shape}"
                    )
                f.write(memoryview(array).cast("B"))
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
