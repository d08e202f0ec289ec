"""Helpers shared by the demo-model tests."""

from __future__ import annotations

from pathlib import Path

TEST_EXPERTS = 8  # the demo MoE the tests build (the default build has 64)
TEST_TOP_K = 2


def float32_resident(path: Path):
    """mlx-lm's own model, every weight resident, floats cast to float32."""
    import mlx.core as mx
    from mlx.utils import tree_map
    from mlx_lm.utils import load

    model, tokenizer = load(str(path))
    model.update(
        tree_map(
            lambda a: a.astype(mx.float32) if a.dtype in (mx.float16, mx.bfloat16) else a,
            model.parameters(),
        )
    )
    mx.eval(model.parameters())
    return model, tokenizer


def chat_ids(tokenizer, prompt: str) -> list[int]:
    return list(tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True))


def greedy(model, ids: list[int], steps: int):
    """Prefill ids, then `steps` greedy tokens (EOS included, no early stop):
    (tokens, logits [steps, vocab] float32 numpy: row t gave token t)."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    logits = model(mx.array(ids)[None], cache=cache)[0, -1]
    tokens, rows = [], []
    for _ in range(steps):
        mx.eval(logits)
        rows.append(np.array(logits, dtype=np.float32))
        token = int(mx.argmax(logits).item())
        tokens.append(token)
        logits = model(mx.array([[token]]), cache=cache)[0, -1]
    return tokens, np.stack(rows)


def tensor_ranges(folder: Path) -> dict[str, tuple[Path, int, int, list[int]]]:
    """name -> (file, absolute byte offset, nbytes, shape) of every tensor of a checkpoint."""
    import json
    import math

    out = {}
    itemsize = {"U32": 4, "F16": 2, "BF16": 2, "F32": 4, "U8": 1, "I32": 4}
    for file in sorted(folder.glob("*.safetensors")):
        with open(file, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            b0, b1 = meta["data_offsets"]
            assert b1 - b0 == math.prod(meta["shape"]) * itemsize[meta["dtype"]]
            out[name] = (file, 8 + n + b0, b1 - b0, meta["shape"])
    return out
