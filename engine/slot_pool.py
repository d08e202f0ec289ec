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
        self.generation = 0  # moves on when shrink() swaps the arrays: holders rebind
        for name, spec in specs.items():
            self.arrays[name], self.views[name] = _allocate(spec, num_slots)

    def shrink(self, num_slots: int, moves: list[tuple[int, int]]) -> None:
        """Keep the first num_slots slots, after copying each (from, to) of `moves`; the old,
        larger arrays go once nothing else holds them (the streamer's read jobs and the
        layers' bound arrays are rebuilt from `generation`)."""
        for name, spec in self.specs.items():
            view = self.views[name]
            for src, dst in moves:
                view[dst] = view[src]
            array, new_view = _allocate(spec, num_slots)
            new_view[...] = view[:num_slots]
            self.arrays[name], self.views[name] = array, new_view
        self.num_slots = num_slots
        self.generation += 1

    @staticmethod
    def slot_nbytes(specs: dict[str, TensorSpec]) -> int:
        return sum(s.nbytes for s in specs.values())

    @property
    def nbytes(self) -> int:
        return self.num_slots * self.slot_nbytes(self.specs)


def _allocate(spec: TensorSpec, num_slots: int) -> tuple[mx.array, np.ndarray]:
    """A zeroed [num_slots, ...] array and a writable numpy view of its memory."""
    storage = mx.zeros((num_slots, *spec.shape), dtype=mx_dtype(_STORAGE.get(spec.dtype, spec.dtype)))
    mx.eval(storage)
    # mlx arrays export the buffer protocol; mlx's stubs do not declare it
    view = np.array(memoryview(storage), copy=False)  # type: ignore[arg-type]
    array = storage.view(mx_dtype(spec.dtype)) if spec.dtype in _STORAGE else storage
    mx.eval(array)
    return array, view
