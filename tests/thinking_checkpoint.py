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


def write_thinking_checkpoint(path: Path, arch: str = "qwen3_moe", template: str = OPENING_TEMPLATE) -> Path:
    return add_think_tokens(write_checkpoint(Path(path), arch), template)


def oracle_split(
    path: Path, messages: list[dict], enable_thinking: bool | None, max_tokens: int
) -> tuple[list[int], str, str]:
    """mlx-lm's greedy answer, fully resident: (tokens, thinking, answer), the text
    detokenized as the engine streams it and split by engine.reasoning."""
    from mlx_lm.utils import load_tokenizer
    from oracle import oracle_answer

    from engine.reasoning import ThinkMarkers, prompt_opens_thinking, split_text

    switches = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    prompt = {}

    def ids(tok):
        prompt["text"] = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **switches)
        return tok.encode(prompt["text"], add_special_tokens=False)

    tokens = oracle_answer(path, ids, max_tokens)
    detok = load_tokenizer(path).detokenizer
    detok.reset()
    for token in tokens:
        detok.add_token(token)
    detok.finalize()
    markers = ThinkMarkers("<think>", "</think>")
    thinking, answer = split_text(detok.text, markers, opened=prompt_opens_thinking(prompt["text"], markers))
    return tokens, thinking, answer
