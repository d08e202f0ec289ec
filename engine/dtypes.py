"""safetensors dtype tags and what they are in numpy and MLX: the one table.

Checkpoints name dtypes by safetensors tag ("BF16"); the validator needs the
element size of every tag, the demo writer the tag of a numpy dtype, and the
loader and streamer the MLX dtype of a tag and back. One table keeps them in step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import mlx.core as mx

# tag -> bytes per element, for every tag the safetensors format defines
ITEMSIZE: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "U64": 8,
    "I64": 8,
    "U32": 4,
    "I32": 4,
    "U16": 2,
    "I16": 2,
    "U8": 1,
    "I8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
# Valid safetensors, but mx.load refuses them.
MLX_CANNOT_LOAD = frozenset({"F64", "F8_E5M2"})
# tag -> numpy dtype name (bfloat16 and the 8-bit floats have none)
_NUMPY = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "U64": "uint64",
    "I64": "int64",
    "U32": "uint32",
    "I32": "int32",
    "U16": "uint16",
    "I16": "int16",
    "U8": "uint8",
    "I8": "int8",
    "BOOL": "bool",
}
# tag -> name of the mlx.core dtype
_MLX = {
    **{tag: name for tag, name in _NUMPY.items() if tag not in ("F64", "BOOL")},
    "BF16": "bfloat16",
    "BOOL": "bool_",
}
_TAG_OF_NUMPY = {np.dtype(name): tag for tag, name in _NUMPY.items()}


def tag_of_numpy(dtype: np.dtype) -> str:
    """The safetensors tag of a numpy dtype (KeyError if it has none)."""
    return _TAG_OF_NUMPY[np.dtype(dtype)]


def mx_dtype(tag: str) -> mx.Dtype:
    """The MLX dtype of a safetensors tag (KeyError for tags MLX cannot hold)."""
    import mlx.core as mx  # imported here: the validator and the UI run without MLX

    return getattr(mx, _MLX[tag])


def tag_of_mx(dtype: mx.Dtype) -> str | None:
    """The safetensors tag of an MLX dtype, or None."""
    return next((tag for tag in _MLX if mx_dtype(tag) == dtype), None)


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's shape and dtype (a safetensors tag), before any bytes exist."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * ITEMSIZE[self.dtype]


def elements(array: np.ndarray) -> Any:
    """A C-contiguous array's elements as Python scalars, through a memoryview: read and
    written about twice as fast as through numpy's scalar indexing (hot loops over a few
    elements: the cache policy's per-call updates)."""
    return memoryview(array)  # type: ignore[arg-type]  # numpy arrays export the buffer protocol
