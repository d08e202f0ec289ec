"""How many characters a prompt may have before it cannot fit the context, known without tokenizing.

Tokenizing a multi-megabyte prompt costs seconds and hundreds of MB (the
tokenizer's per-token records) only to learn that it is too long. No token
stands for more characters than its longest vocabulary entry (byte-level BPE:
one character per byte; SentencePiece: `▁` for a space; byte fallback `<0x41>`
is longer than the one character it makes), so a text of C characters has at
least C / longest tokens. A normalizer can shrink text before tokenizing
(Unicode composition joins up to three code points into one), so with one the
bound is four times looser. A prompt over the bound is refused before any work.
"""

from __future__ import annotations

import json
from pathlib import Path

NORMALIZER_SLACK = 4


def longest_token_chars(model_dir: Path) -> int | None:
    """Characters of the longest entry in the model's tokenizer.json (times NORMALIZER_SLACK when it
    normalizes), or None when there is no tokenizer.json to read (then only the body limit applies)."""
    try:
        spec = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
        model = spec.get("model") or {}
        vocab = model.get("vocab") or {}
        pieces = list(vocab) if isinstance(vocab, dict) else [entry[0] for entry in vocab]
        pieces += [t.get("content", "") for t in spec.get("added_tokens") or []]
    except (OSError, ValueError, TypeError, AttributeError, IndexError, KeyError):
        return None
    longest = max((len(p) for p in pieces if isinstance(p, str)), default=0)
    if longest <= 0:
        return None
    return longest * (NORMALIZER_SLACK if spec.get("normalizer") else 1)


def prompt_char_limit(model_dir: Path, context_tokens: int) -> int | None:
    """Characters beyond which a prompt certainly exceeds `context_tokens` (None: no bound known)."""
    longest = longest_token_chars(model_dir)
    if not context_tokens or longest is None:
        return None
    return context_tokens * longest
