"""Generation settings shared by both chat UIs, from `outlier chat` options."""

from __future__ import annotations

import argparse

from engine.api import GenerationParams

# Chat answers (code, explanations) run longer than the engine's generic default.
CHAT_MAX_TOKENS = 2048


def params_from_args(args: argparse.Namespace) -> GenerationParams:
    """Generation settings from the command line (chat defaults where not given)."""
    max_tokens = getattr(args, "max_tokens", None)
    temperature = getattr(args, "temperature", None)
    return GenerationParams(
        max_tokens=max_tokens if max_tokens is not None else CHAT_MAX_TOKENS,
        temperature=temperature if temperature is not None else GenerationParams().temperature,
        enable_thinking=getattr(args, "think", None),
    )


def attach_limit_from_args(args: argparse.Namespace) -> int:
    """The largest file `@path` may attach, in bytes."""
    return int(getattr(args, "attach_limit_kb", None) or 256) * 1024
