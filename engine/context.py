"""How many tokens a model can attend to: its context limit.

A prompt at or beyond the limit is refused at once (instead of a prefill
that runs for minutes and answers nonsense), and answers stop at the limit.
"""

from __future__ import annotations

# Tokenizers without a real limit report a huge sentinel (transformers uses int(1e30)).
_NO_LIMIT = 10**9


def context_limit(config: dict, tokenizer: object | None = None) -> int:
    """Tokens the model can hold: config's max_position_embeddings (or the
    text_config's), else the tokenizer's model_max_length; 0 when neither says."""
    for cfg in (config.get("text_config"), config):
        if isinstance(cfg, dict):
            value = cfg.get("max_position_embeddings")
            if isinstance(value, int) and not isinstance(value, bool) and 0 < value < _NO_LIMIT:
                return value
    value = getattr(tokenizer, "model_max_length", None) if tokenizer is not None else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < _NO_LIMIT:
        return value
    return 0
