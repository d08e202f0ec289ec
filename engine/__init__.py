"""Outlier's engine: runs MoE models whose routed experts stream from the SSD.

Importing this package is cheap (no MLX); `Engine` pulls MLX in on first use.
"""

from engine.api import (
    EngineClient,
    EngineState,
    GenerationDone,
    GenerationEvent,
    GenerationFailed,
    GenerationParams,
    GenerationStats,
    LoadProgress,
    ModelInfo,
    TelemetrySnapshot,
    TextDelta,
)
from engine.errors import OutlierError

__all__ = [
    "Engine",
    "EngineClient",
    "EngineState",
    "GenerationDone",
    "GenerationEvent",
    "GenerationFailed",
    "GenerationParams",
    "GenerationStats",
    "LoadProgress",
    "ModelInfo",
    "OutlierError",
    "TelemetrySnapshot",
    "TextDelta",
]


def __getattr__(name: str):
    if name == "Engine":
        from engine.worker import Engine

        return Engine
    raise AttributeError(name)
