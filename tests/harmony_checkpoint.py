"""A tiny gpt_oss checkpoint whose tokenizer has harmony's channel tokens and whose template ends
the prompt with `<|start|>assistant`, as gpt-oss's does."""

from __future__ import annotations

import json
from pathlib import Path

from checkpoints import write_checkpoint

HARMONY_TOKENS = ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>"]
HARMONY_TEMPLATE = (
    "{% for m in messages %}<|start|>{{ m['role'] }}<|message|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant{% endif %}"
)


def write_harmony_checkpoint(path: Path) -> Path:
    from tokenizers import AddedToken, Tokenizer

    write_checkpoint(Path(path), "gpt_oss")
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(t, special=True) for t in HARMONY_TOKENS])
    tok.save(str(path / "tokenizer.json"))
    config_path = path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = HARMONY_TEMPLATE
    config_path.write_text(json.dumps(config))
    return Path(path)
