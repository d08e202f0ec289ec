"""The dtype the engine computes in, chosen once per load (`--compute-dtype`).

On the CPU backend MLX's half-precision kernels are 10-40x slower, so `auto` widens
half-precision floats to float32 there; on Metal and CUDA `auto` keeps the checkpoint's
own dtypes (bfloat16 for mlx-community folders). An explicit choice casts every
half-precision float of the backbone and of the expert slots to it, exactly as the
resident reference does (`cast_half_floats`), so streamed and resident compute the same.
Float32 tensors a checkpoint keeps on purpose (routing biases, sinks) stay float32 either
way, as mlx-lm keeps them.
"""

from __future__ import annotations

import typing

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map

CHOICES = ("auto", "float32", "bfloat16", "float16")
_HALF = (mx.float16, mx.bfloat16)


def resolve(choice: str | mx.Dtype | None) -> mx.Dtype | None:
    """The dtype to cast half-precision floats to (None: keep the checkpoint's).
    choice: one of CHOICES, an MLX dtype, or None."""
    if choice is None or isinstance(choice, mx.Dtype):
        return choice
    if choice == "auto":
        return mx.float32 if mx.default_device() == mx.cpu else None
    if choice not in CHOICES:
        raise ValueError(f"compute dtype must be one of {', '.join(CHOICES)}, got {choice!r}")
    return getattr(mx, choice)


def name_of(dtype: mx.Dtype | None) -> str:
    """'float32', 'bfloat16', 'float16', or 'checkpoint' (None: the checkpoint's own dtypes)."""
    if dtype is None:
        return "checkpoint"
    return str(dtype).removeprefix("mlx.core.")


def dominant_float(model: nn.Module) -> str:
    """The float dtype holding most of the model's float parameter bytes ('' if none): what
    it computes in when the checkpoint's dtypes are kept."""
    from mlx.utils import tree_flatten

    bytes_of: dict[str, int] = {}
    for _, a in typing.cast("list[tuple[str, mx.array]]", tree_flatten(model.parameters())):
        if mx.issubdtype(a.dtype, mx.floating):
            bytes_of[name_of(a.dtype)] = bytes_of.get(name_of(a.dtype), 0) + a.nbytes
    return max(bytes_of, key=lambda k: bytes_of[k], default="")


def cast_half_floats(model: nn.Module, dtype: mx.Dtype | None) -> None:
    """Cast the model's float16/bfloat16 parameters to dtype (None: leave them)."""
    if dtype is not None:
        model.update(tree_map(lambda a: a.astype(dtype) if a.dtype in _HALF else a, model.parameters()))
