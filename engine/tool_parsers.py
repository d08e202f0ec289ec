"""mlx-lm's tool-call parsers (mlx_lm/tool_parsers/), found by name, without importing MLX.

Which parser a model needs is mlx-lm's decision (TokenizerWrapper infers it from
the chat template or reads `tool_parser_type` from tokenizer_config.json); this
module only carries that name across to the server, which may run the fake
engine and should not pay for importing mlx_lm (MLX, transformers) to parse
a tool call. The parser modules are plain Python (json, ast, regex), so they
are loaded from mlx-lm's folder as a package of their own when mlx_lm itself
is not imported yet.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

_STANDALONE = "_outlier_mlx_lm_tool_parsers"


@dataclass(frozen=True)
class ToolParser:
    """One mlx-lm parser: the markers around a call in the model's text and the parse function."""

    name: str
    start: str
    end: str  # "" (mistral): the call runs to the end of the answer
    parse: Any  # parse(text between the markers, tools) -> {"name", "arguments"} or a list of them


def parser_name(tokenizer: Any) -> str | None:
    """The mlx-lm parser module a loaded TokenizerWrapper uses for tool calls, or None."""
    parse = getattr(tokenizer, "tool_parser", None)
    if parse is None or not getattr(tokenizer, "has_tool_calling", False):
        return None
    module = getattr(parse, "__module__", "") or ""
    return module.rsplit(".", 1)[-1] or None


def load_parser(name: str) -> ToolParser:
    """mlx-lm's parser `name`; ValueError when mlx-lm has no such parser."""
    if not name.isidentifier():
        raise ValueError(f"no tool parser named {name!r}")
    try:
        module = _module(name)
    except ModuleNotFoundError:
        raise ValueError(f"mlx-lm has no tool parser named {name!r}") from None
    return ToolParser(name, module.tool_call_start, module.tool_call_end, module.parse_tool_call)


def available() -> list[str]:
    """Names of the parsers the installed mlx-lm ships."""
    return sorted(p.stem for p in _folder().glob("*.py") if p.stem != "__init__")


def _module(name: str) -> ModuleType:
    if "mlx_lm" in sys.modules:  # the real engine runs here: use mlx-lm's own modules
        return importlib.import_module(f"mlx_lm.tool_parsers.{name}")
    if _STANDALONE not in sys.modules:
        folder = _folder()
        spec = importlib.util.spec_from_file_location(
            _STANDALONE, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        assert spec is not None and spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules[_STANDALONE] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{_STANDALONE}.{name}")  # relative imports (laguna) stay inside


def _folder() -> Path:
    spec = importlib.util.find_spec("mlx_lm")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("mlx_lm")
    return Path(next(iter(spec.submodule_search_locations))) / "tool_parsers"


def tool_fields(tokenizer: Any) -> dict:
    """The ModelInfo fields about tool calls, read from a loaded tokenizer."""
    from engine.harmony import TOOL_PARSER, is_harmony

    harmony = is_harmony(tokenizer)
    return dict(tool_parser=TOOL_PARSER if harmony else parser_name(tokenizer), harmony=harmony)
