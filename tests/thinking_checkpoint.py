"""A tiny checkpoint whose tokenizer and chat template think like Qwen3.5.

The vocabulary has `<think>` / `</think>` (so mlx-lm's TokenizerWrapper reports
has_thinking) and the template opens the think block in the generation prompt
unless `enable_thinking` is false, when it writes an empty, closed block.
"""

from __future__ import annotations

import json
from pathlib import Path

from checkpoints import write_checkpoint

OPENING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)

# Renders earlier answers' reasoning_content back into the prompt.
KEEPING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['reasoning_content'] is defined %}<think>{{ m['reasoning_content'] }}</think>{% endif %}"
    "{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def add_think_tokens(path: Path, template: str = OPENING_TEMPLATE) -> Path:
    """Give an existing tiny checkpoint's tokenizer think tokens and `template`."""
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.add_tokens([AddedToken("<think>", special=False), AddedToken("</think>", special=False)])
    tok.save(str(path / "tokenizer.json"))
    config_path = path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = template
    config_path.write_text(json.dumps(config))
    return path


def write_thinking_checkpoint(path: Path, arch: str = "qwen3_moe",
                              template: str = OPENING_TEMPLATE) -> Path:
    return add_think_tokens(write_checkpoint(Path(path), arch), template)
