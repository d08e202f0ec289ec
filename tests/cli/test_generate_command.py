"""`outlier generate` as a user runs it: a subprocess, stdout, exit codes, --stats-json."""

import json
import os
import subprocess
import sys

from oracle import oracle_answer

STATS_KEYS = {
    "tokens",
    "prompt_tokens",
    "generation_tokens",
    "prompt_tps",
    "generation_tps",
    "peak_rss_bytes",
    "cache_budget_bytes",
    "cache_peak_bytes",
    "expert_hits",
    "expert_misses",
    "bytes_read",
    "io_wait_seconds",
}


def outlier(*args):
    return subprocess.run(
        [sys.executable, "-m", "outlier_tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_generate_streams_answer_and_writes_stats(checkpoint_factory, tmp_path):
    path = checkpoint_factory("qwen3_moe")
    stats_path = tmp_path / "stats.json"
    result = outlier(
        "generate",
        "--model",
        str(path),
        "--prompt",
        "Hello, world",
        "--max-tokens",
        "16",
        "--no-chat-template",
        "--cache-mb",
        "0.05",
        "--stats-json",
        str(stats_path),
    )
    assert result.returncode == 0, result.stderr
    stats = json.loads(stats_path.read_text())
    assert set(stats) >= STATS_KEYS
    assert stats["tokens"] == oracle_answer(path, lambda tok: tok.encode("Hello, world"), 16)
    assert stats["generation_tokens"] == len(stats["tokens"])
    assert stats["cache_budget_bytes"] == int(0.05 * 1024 * 1024)
    assert 0 < stats["cache_peak_bytes"] <= stats["cache_budget_bytes"]
    assert stats["expert_misses"] > 0 and stats["bytes_read"] > 0
    assert "Traceback" not in result.stderr


def test_generate_computes_in_the_dtype_asked_for(checkpoint_factory, tmp_path):
    """--compute-dtype bfloat16: the answer is mlx-lm's, resident, in bfloat16 (greedy; the
    float32 answer of these random weights differs from the 6th token, so the flag really
    reaches the engine)."""
    import mlx.core as mx

    path = checkpoint_factory("mixtral")
    stats_path = tmp_path / "stats.json"
    args = ["generate", "--model", str(path), "--prompt", "Hello, world", "--max-tokens", "12"]
    args += ["--no-chat-template", "--cache-mb", "0.05", "--prefetch", "on", "--stats-json", str(stats_path)]
    result = outlier(*args, "--compute-dtype", "bfloat16")
    assert result.returncode == 0, result.stderr
    tokens = json.loads(stats_path.read_text())["tokens"]
    assert tokens == oracle_answer(path, lambda tok: tok.encode("Hello, world"), 12, dtype=mx.bfloat16)
    assert tokens != oracle_answer(path, lambda tok: tok.encode("Hello, world"), 12)


def test_generate_with_chat_template(checkpoint_factory, tmp_path):
    """Without --no-chat-template the prompt goes through the model's chat template: the
    answer is mlx-lm's greedy answer to the templated prompt, not to the raw text."""
    from mlx_lm.utils import load_tokenizer

    path = checkpoint_factory("mixtral")
    stats_path = tmp_path / "stats.json"
    result = outlier(
        "generate", "--model", str(path), "--prompt", "hi", "--max-tokens", "8", "--stats-json", str(stats_path)
    )
    assert result.returncode == 0, result.stderr

    def templated(tok):
        text = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
        return tok.encode(text, add_special_tokens=False)

    stats = json.loads(stats_path.read_text())
    assert stats["prompt_tokens"] == len(templated(load_tokenizer(path)))
    assert stats["tokens"] == oracle_answer(path, templated, 8)


def test_bad_model_path_is_one_line(tmp_path):
    result = outlier("generate", "--model", str(tmp_path / "nowhere"), "--prompt", "hi")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("outlier: ") and "nowhere" in lines[0]
    assert result.stdout == ""


def test_budget_too_small_says_what_works(checkpoint_factory):
    result = outlier("generate", "--model", str(checkpoint_factory("mixtral")), "--prompt", "hi", "--cache-mb", "0.001")
    assert result.returncode == 1
    assert "--cache-mb" in result.stderr and "Traceback" not in result.stderr


def test_generate_prints_only_the_answer_of_a_thinking_model(tmp_path):
    """A template that opens <think> in the prompt: with thinking on, all the tiny
    random model says is thinking (stderr with --show-thinking, never stdout);
    with --no-think it is the answer."""
    from thinking_checkpoint import oracle_split, write_thinking_checkpoint

    path = write_thinking_checkpoint(tmp_path / "thinking")
    question = [{"role": "user", "content": "hi"}]
    _, thinking, answer = oracle_split(path, question, None, 8)
    assert thinking and not answer
    shown = outlier("generate", "--model", str(path), "--prompt", "hi", "--max-tokens", "8", "--show-thinking")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "" and thinking in shown.stderr  # no answer: nothing on stdout, as in pipe mode
    quiet = outlier("generate", "--model", str(path), "--prompt", "hi", "--max-tokens", "8")
    assert quiet.stdout == "" and thinking not in quiet.stderr

    _, thinking, answer = oracle_split(path, question, False, 8)
    assert answer and not thinking
    off = outlier("generate", "--model", str(path), "--prompt", "hi", "--max-tokens", "8", "--no-think")
    assert off.returncode == 0, off.stderr
    assert off.stdout == answer + "\n"
