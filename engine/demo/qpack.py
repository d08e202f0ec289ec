"""MLX affine quantization layout helpers in numpy: 4- and 8-bit values packed
into uint32 words, value i of a word at bits [bits*i, bits*(i+1))."""

from __future__ import annotations

import numpy as np


def unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """uint32 [..., n] → uint8 [..., n * 32 // bits] quantized values."""
    per_word = 32 // bits
    shifts = (np.arange(per_word, dtype=np.uint32) * bits).astype(np.uint32)
    mask = np.uint32((1 << bits) - 1)
    vals = (packed[..., None] >> shifts) & mask
    return vals.reshape(*packed.shape[:-1], packed.shape[-1] * per_word).astype(np.uint8)


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """uint8 [..., m] quantized values → uint32 [..., m * bits // 32]."""
    per_word = 32 // bits
    v = values.reshape(*values.shape[:-1], values.shape[-1] // per_word, per_word).astype(np.uint32)
    shifts = (np.arange(per_word, dtype=np.uint32) * bits).astype(np.uint32)
    return np.bitwise_or.reduce(v << shifts, axis=-1).astype(np.uint32)


def dequantize(weight: np.ndarray, scales: np.ndarray, biases: np.ndarray, bits: int) -> np.ndarray:
    """float32 [out, in] from an MLX affine-quantized (weight, scales, biases)."""
    q = unpack(weight, bits).astype(np.float32)
    groups = scales.shape[-1]
    q = q.reshape(*q.shape[:-1], groups, q.shape[-1] // groups)
    w = q * scales.astype(np.float32)[..., None] + biases.astype(np.float32)[..., None]
    return w.reshape(*w.shape[:-2], -1)
