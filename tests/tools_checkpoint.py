"""A tiny checkpoint whose chat template renders tools, tool calls and tool results like Qwen3's.

mlx-lm infers the json_tools parser from such a template (`<tool_call>` and
`tool_call.name` in it), so the engine reports tool calling for it.
"""

from __future__ import annotations

import json
from pathlib import Path

from checkpoints import write_checkpoint

TOOLS_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
    "# Tools\n<tools>\n{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}\n</tools>\n"
    "For each function call, return a json object within <tool_call></tool_call> XML tags.<|im_end|>\n"
    "{%- elif messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m.role == 'system' and loop.first %}"
    "{%- elif m.role == 'assistant' %}\n<|im_start|>assistant\n{{ m.content }}"
    "{%- for tool_call in m.tool_calls or [] %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    '\n<tool_call>\n{"name": "{{ tool_call.name }}", "arguments": {{ tool_call.arguments | tojson }}}\n</tool_call>'
    "{%- endfor %}<|im_end|>"
    "{%- elif m.role == 'tool' %}\n<|im_start|>user\n<tool_response>\n{{ m.content }}\n</tool_response><|im_end|>"
    "{%- else %}\n<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}\n<|im_start|>assistant\n{%- endif %}"
)


def write_tools_checkpoint(path: Path, arch: str = "qwen3_moe") -> Path:
    """A tiny checkpoint with TOOLS_TEMPLATE as its chat template and a 2048-token context
    (tool definitions make long prompts)."""
    write_checkpoint(Path(path), arch)
    model_config = Path(path) / "config.json"
    model_config.write_text(json.dumps({**json.loads(model_config.read_text()), "max_position_embeddings": 2048}))
    config_path = Path(path) / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = TOOLS_TEMPLATE
    config_path.write_text(json.dumps(config))
    return Path(path)
