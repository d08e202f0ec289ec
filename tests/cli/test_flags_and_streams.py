"""Everyday mistakes at the command line end in one clear line, never "Internal error".

Flags are checked by argparse (exit 2, before any model is loaded); stdin and
stdout problems and prompts that do not fit the model's context exit 1 with one
`outlier:` line. The tiny checkpoints' context is 4,096 tokens (their tokenizer's
model_max_length); the byte-level tokenizer makes one token per byte.
"""

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from outlier_tui.cli import build_parser
from outlier_tui.std_streams import InputTextError, read_all

ROOT = Path(__file__).resolve().parents[2]

BAD_FLAGS = [
    ("generate", "--reader-threads", "0", "at least 1"),
    ("generate", "--reader-threads", "-1", "at least 1"),
    ("generate", "--reader-threads", "100000", "at most 64"),
    ("generate", "--seed", "-1", "at least 0"),
    ("generate", "--seed", str(2**64), "at most"),
    ("generate", "--seed", "1.5", "not a whole number"),
    ("generate", "--cache-mb", "nan", "finite"),
    ("generate", "--cache-mb", "inf", "finite"),
    ("generate", "--cache-mb", "-3", "more than 0"),
    ("generate", "--temp", "-1", "at least 0"),
    ("generate", "--temp", "nan", "finite"),
    ("generate", "--temp", "inf", "finite"),
    ("generate", "--top-p", "0", "more than 0"),
    ("generate", "--top-p", "-1", "more than 0"),
    ("generate", "--top-p", "2", "at most 1"),
    ("generate", "--top-p", "nan", "finite"),
    ("generate", "--max-tokens", "0", "more than 0"),
    ("generate", "--model", "", "must not be empty"),
    ("chat", "--cache-mb", "inf", "finite"),
    ("chat", "--temperature", "-0.5", "at least 0"),
    ("chat", "--temperature", "nan", "finite"),
    ("chat", "--max-tokens", "-2", "more than 0"),
    ("chat", "--model", "", "must not be empty"),
    ("bench", "--memcap-mb", "inf", "finite"),
    ("bench", "--memcap-mb", "-1", "at least 0"),
    ("bench", "--reader-threads", "0", "at least 1"),
    ("bench", "--tokens", "0", "more than 0"),
    *[(command, "--compute-dtype", "int8", "invalid choice") for command in ("generate", "chat", "serve", "bench")],
    *[(command, "--page-cache", "maybe", "invalid choice") for command in ("generate", "chat", "serve")],
]


@pytest.mark.parametrize("command,flag,value,expected", BAD_FLAGS)
def test_bad_flag_is_a_one_line_usage_error(command, flag, value, expected, capsys):
    args = [command, flag, value] + (["--prompt", "hi"] if command == "generate" else [])
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(args)
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"outlier {command}: error: argument {flag}") and expected in last, last


@pytest.mark.parametrize(
    "flag,value,parsed",
    [
        ("--seed", str(2**64 - 1), 2**64 - 1),
        ("--seed", "0", 0),
        ("--top-p", "1", 1.0),
        ("--temp", "0", 0.0),
        ("--reader-threads", "64", 64),
        ("--cache-mb", "0.05", 0.05),
    ],
)
def test_edge_values_are_accepted(flag, value, parsed):
    """(and every --compute-dtype choice on each command that runs a model, default auto)"""
    args = build_parser().parse_args(["generate", "--prompt", "hi", flag, value])
    assert getattr(args, flag[2:].replace("-", "_")) == parsed


@pytest.mark.parametrize("command", ["generate", "chat", "serve", "bench"])
def test_compute_dtype_choices(command):
    extra = ["--prompt", "hi"] if command == "generate" else []
    assert build_parser().parse_args([command, *extra]).compute_dtype == "auto"
    for choice in ("auto", "float32", "bfloat16", "float16"):
        assert build_parser().parse_args([command, *extra, "--compute-dtype", choice]).compute_dtype == choice
    if command != "bench":
        assert build_parser().parse_args([command, *extra]).page_cache == "auto"
        assert build_parser().parse_args([command, *extra, "--page-cache", "off"]).page_cache == "off"


def test_read_all_refuses_invalid_utf8_with_the_offset():
    stream = io.TextIOWrapper(io.BytesIO(b"caf\xe9 au lait"), encoding="utf-8")
    with pytest.raises(InputTextError) as exc:
        read_all(stream)
    assert "offset 3" in str(exc.value) and "0xe9" in str(exc.value)
    assert read_all(io.TextIOWrapper(io.BytesIO("café".encode()), encoding="utf-8")) == "café"
    with pytest.raises(InputTextError):
        read_all(None)


def outlier(*args, input_bytes=None, close_stdout=False, data_dir=None):
    """Run the CLI; close_stdout starts it with file descriptor 1 closed (`outlier ... >&-`)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
    if data_dir is not None:
        env["OUTLIER_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "outlier_tui.cli", *args],
        input=input_bytes,
        capture_output=True,
        timeout=300,
        env=env,
        preexec_fn=(lambda: os.close(1)) if close_stdout else None,
    )


def _one_error_line(result) -> str:
    lines = result.stderr.decode().strip().splitlines()
    assert lines and lines[-1].startswith("outlier: "), result.stderr
    assert "Internal error" not in result.stderr.decode() and "Traceback" not in result.stderr.decode()
    return lines[-1]


@pytest.mark.parametrize("command", [["generate", "--prompt", "-"], ["chat", "--chat", "new"], ["chat"]])
def test_invalid_utf8_on_stdin_is_one_line(checkpoint_factory, tmp_path, command):
    result = outlier(
        *command, "--model", str(checkpoint_factory("mixtral")), input_bytes=b"caf\xe9\n", data_dir=tmp_path
    )
    assert result.returncode == 1
    assert "not valid UTF-8" in _one_error_line(result)
    assert result.stdout == b""


@pytest.mark.parametrize("command", [["generate", "--prompt", "hi"], ["chat"]])
def test_closed_stdout_is_one_line(checkpoint_factory, tmp_path, command):
    result = outlier(
        *command,
        "--model",
        str(checkpoint_factory("mixtral")),
        input_bytes=b"hi\n",
        close_stdout=True,
        data_dir=tmp_path,
    )
    assert result.returncode == 1
    assert "standard output is closed" in _one_error_line(result)


def test_zero_token_prompt_is_refused(checkpoint_factory):
    result = outlier("generate", "--model", str(checkpoint_factory("mixtral")), "--prompt", "", "--no-chat-template")
    assert result.returncode == 1 and "0 tokens" in _one_error_line(result)


@pytest.mark.parametrize("command", [["generate", "--prompt", "-", "--no-chat-template"], ["chat"]])
def test_prompt_beyond_the_context_is_refused_with_both_numbers(checkpoint_factory, tmp_path, command):
    result = outlier(
        *command, "--model", str(checkpoint_factory("mixtral")), input_bytes=b"x" * 5000, data_dir=tmp_path
    )
    assert result.returncode == 1
    line = _one_error_line(result)
    assert re.search(r"is 50\d\d tokens", line) and "4096" in line, line  # + chat template tokens
    assert len(result.stderr.decode().strip().splitlines()) <= 6  # load progress lines, then the error


def test_max_tokens_stops_at_the_context_limit(checkpoint_factory, tmp_path):
    stats_path = tmp_path / "stats.json"
    result = outlier(
        "generate",
        "--model",
        str(checkpoint_factory("mixtral")),
        "--prompt",
        "y" * 4090,
        "--no-chat-template",
        "--max-tokens",
        "100000",
        "--stats-json",
        str(stats_path),
    )
    assert result.returncode == 0, result.stderr
    assert "beyond the model's context of 4096 tokens" in result.stderr.decode()
    stats = json.loads(stats_path.read_text())
    assert stats["prompt_tokens"] == 4090 and 1 <= stats["generation_tokens"] <= 6
