"""MLX buffers that hold cached experts: one [slots, ...] array per expert tensor.

Each array has a writable numpy view over the same memory, so the reader can
`pread` into a slot and the next `gather_qmm` sees the bytes without a copy.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from engine.dtypes import TensorSpec, mx_dtype

# dtypes numpy cannot view directly are stored under a same-width integer type
_STORAGE = {"BF16": "U16"}


class SlotPool:
    def __init__(self, specs: dict[str, TensorSpec], num_slots: int) -> None:
        self.num_slots = num_slots
        self.specs = specs
        self.arrays: dict[str, mx.array] = {}
        self.views: dict[str, np.ndarray] = {}
        for name, spec in specs.items():
            storage = mx.zeros((num_slots, *spec.shape), dtype=mx_dtype(_STORAGE.get(spec.dtype, spec.dtype)))
            mx.eval(storage)
            # mlx arrays export the buffer protocol; mlx's stubs do not declare it
            self.views[name] = np.array(memoryview(storage), copy=False)  # type: ignore[arg-type]
            array = storage.view(mx_dtype(spec.dtype)) if spec.dtype in _STORAGE else storage
            mx.eval(array)
            self.arrays[name] = array

    @staticmethod
    def slot_nbytes(specs: dict[str, TensorSpec]) -> int:
        return sum(s.nbytes for s in specs.values())

    @property
    def nbytes(self) -> int:
        return self.num_slots * self.slot_nbytes(self.specs)
