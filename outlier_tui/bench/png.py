"""A tiny RGB canvas and PNG writer (numpy + zlib): rectangles, lines, dots and
5x7 text, enough for a readable line chart without a plotting library."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from outlier_tui.bench import font5x7

Color = tuple[int, int, int]


class Canvas:
    def __init__(self, width: int, height: int, background: Color = (255, 255, 255)) -> None:
        self.pixels = np.empty((height, width, 3), np.uint8)
        self.pixels[...] = background

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        x0, x1 = sorted((max(0, int(x0)), min(self.width, int(x1))))
        y0, y1 = sorted((max(0, int(y0)), min(self.height, int(y1))))
        self.pixels[y0:y1, x0:x1] = color

    def dot(self, x: float, y: float, radius: int, color: Color) -> None:
        cx, cy = int(round(x)), int(round(y))
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                if dx * dx + dy * dy <= radius * radius:
                    self._set(cx + dx, cy + dy, color)

    def line(self, x0: float, y0: float, x1: float, y1: float, color: Color, width: int = 1, dash: int = 0) -> None:
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        half = width // 2
        for i in range(steps + 1):
            if dash and (i // dash) % 2:
                continue
            t = i / steps
            x, y = int(round(x0 + (x1 - x0) * t)), int(round(y0 + (y1 - y0) * t))
            self.rect(x - half, y - half, x - half + width, y - half + width, color)

    def text(self, x: float, y: float, s: str, color: Color = (0, 0, 0), scale: int = 2, anchor: str = "left") -> None:
        """Draw s with its top at y; anchor is left, center or right of x."""
        advance = (font5x7.WIDTH + 1) * scale
        total = advance * len(s) - scale
        x = x - total if anchor == "right" else x - total / 2 if anchor == "center" else x
        for i, ch in enumerate(s):
            mask = np.kron(font5x7.glyph(ch), np.ones((scale, scale), bool))
            ox, oy = int(round(x)) + i * advance, int(round(y))
            h, w = mask.shape
            ys, xs = np.nonzero(mask)
            keep = (ys + oy >= 0) & (ys + oy < self.height) & (xs + ox >= 0) & (xs + ox < self.width)
            self.pixels[ys[keep] + oy, xs[keep] + ox] = color

    def _set(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            self.pixels[y, x] = color

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(encode_png(self.pixels))


def encode_png(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of an [H, W, 3] uint8 array."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
