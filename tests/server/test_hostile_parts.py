"""The parts behind `outlier serve`'s defences against hostile clients, without a server."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys

import pytest

from outlier_tui.server.errors import ApiError, engine_error
from outlier_tui.server.fd_limit import connection_cap, files_needed
from outlier_tui.server.fields import refuse_unsupported, refuse_unsupported_message_keys
from outlier_tui.server.guard import HostRule
from outlier_tui.server.keys import KeyFileError, KeyRing, read_key_file
from outlier_tui.server.log_limit import OncePerInterval
from outlier_tui.server.prompt_bound import longest_token_chars
from outlier_tui.server.stops import StopFilter
from outlier_tui.server.wellformed import parse_json


def _cut_oracle(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """The text up to the first stop to complete (longest on a tie), by brute force."""
    for end in range(1, len(text) + 1):
        done = [s for s in stops if text[:end].endswith(s)]
        if done:
            return text[: end - max(map(len, done))], True
    return text, False


def test_stop_filter_equals_brute_force_on_random_streams():
    rng = random.Random(0)
    for trial in range(3000):
        alphabet = "ab" if trial % 2 else "abc"
        stops = tuple("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 4)))
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        cut, sent, stopped, i = StopFilter(stops), "", False, 0
        while i < len(text) and not stopped:
            n = rng.randint(1, 5)
            piece, stopped = cut.feed(text[i : i + n])
            sent += piece
            i += n
            longest = max(map(len, stops))
            assert len(text[:i]) - len(sent) < longest or stopped  # holds back less than one stop
        if not stopped:
            sent += cut.flush()
        assert (sent, stopped) == _cut_oracle(text, stops), (stops, text)


def test_stop_filter_without_stops_passes_text_through():
    cut = StopFilter(())
    assert not cut.active and cut.feed("abc") == ("abc", False) and cut.flush() == ""


def test_keys_same_whitespace_rule_and_one_namespace_per_key(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# team keys\r\n  alpha \r\n\nbeta\t\n")
    ring = KeyRing(read_key_file(str(path)))
    assert len(ring) == 2
    assert ring.identify("Bearer alpha") == 0 and ring.identify("bearer   beta ") == 1
    assert ring.identify("Bearer alph") is None and ring.identify("Basic alpha") is None
    assert ring.identify("") is None
    assert ring.namespace(0) != ring.namespace(1)
    single = KeyRing([" solo "])
    assert single.identify("Bearer solo") == 0 and single.namespace(0) is None  # nothing to keep apart
    (tmp_path / "empty").write_text("# nothing\n\n")
    with pytest.raises(KeyFileError, match="no key"):
        read_key_file(str(tmp_path / "empty"))
    with pytest.raises(KeyFileError, match="cannot read"):
        read_key_file(str(tmp_path / "missing"))


def test_repeated_errors_are_logged_once_per_interval():
    now = [0.0]
    limit = OncePerInterval(10.0, clock=lambda: now[0])

    def record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord("asyncio", level, __file__, 1, message, None, None)

    assert limit.filter(record("Too many open files"))
    assert not any(limit.filter(record("Too many open files")) for _ in range(999))
    assert limit.filter(record("another kind"))
    assert limit.filter(record("access line", logging.INFO))
    now[0] = 11.0
    again = record("Too many open files")
    assert limit.filter(again) and "999 more like this" in again.getMessage()


def test_host_rule():
    loopback = HostRule("127.0.0.1", ("myhost.test",))
    for ok in ("127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:8080", "myhost.test:80", "localhost."):
        assert loopback.allows(ok), ok
    for bad in ("evil.example", "127.0.0.1.evil.example", "10.0.0.1", "[::2]", "localhost.evil"):
        assert not loopback.allows(bad), bad
    wildcard = HostRule("0.0.0.0")
    assert wildcard.allows("192.168.1.5:8080") and wildcard.allows("[fe80::1]:80")
    assert not wildcard.allows("rebound.evil.example")
    assert HostRule("127.0.0.1", ("*",)).allows("anything.example")


def test_unsupported_fields_are_refused_by_name_and_neutral_values_pass():
    refuse_unsupported({"frequency_penalty": 0, "logprobs": False, "tools": [], "logit_bias": None}, "chat")
    for field, value in (
        ("logprobs", 0),
        ("logprobs", True),
        ("response_format", {"type": "json_object"}),
        ("top_k", 40),
    ):
        with pytest.raises(ApiError) as caught:
            refuse_unsupported({field: value}, "chat")
        assert caught.value.status == 400 and caught.value.param == field
    with pytest.raises(ApiError):
        refuse_unsupported({"messages": []}, "text")  # a chat field on the text endpoint
    with pytest.raises(ApiError) as caught:
        refuse_unsupported_message_keys("messages[3]", {"role": "assistant", "refusal": "no"})
    assert caught.value.param == "messages[3].refusal"


def test_json_bodies_with_surrogates_and_escapes():
    assert parse_json(b'{"c": "\\ud83d\\ude00"}')["c"] == "\U0001f600"  # a pair: fine
    assert parse_json(b'{"c": "\\\\ud800"}')["c"] == "\\ud800"  # an escaped backslash, not a surrogate
    for body, where in ((b'{"c": ["x", "\\ud800"]}', "c[1]"), (b'{"a": {"\\udc00": 1}}', "a")):
        with pytest.raises(ApiError) as caught:
            parse_json(body)
        assert caught.value.status == 400 and caught.value.param == where
    with pytest.raises(ApiError, match="nested too deeply"):
        parse_json(b"[" * 50_000)


def test_json_bodies_with_too_many_containers_are_refused_before_parsing():
    from outlier_tui.server.wellformed import MAX_CONTAINERS

    with pytest.raises(ApiError, match=f"more than {MAX_CONTAINERS}"):
        parse_json(b'{"a": [' + b"{}," * MAX_CONTAINERS + b"{}]}")
    braces = "{[" * MAX_CONTAINERS + '\\"{'  # inside a string (with escapes) they are text
    assert parse_json(json.dumps({"a": braces}).encode())["a"] == braces


def test_engine_failures_do_not_leak_internals():
    error = engine_error("Internal error KeyError at generation.py:123: 'x'. Please report it.", "InternalError")
    assert error.status == 500 and ".py" not in error.message
    assert engine_error("too long", "PromptTooLongError").message == "too long"


def test_connection_cap_fits_the_open_file_limit():
    for soft in (400, 4096, 20000, 1 << 20):
        cap = connection_cap(None, soft, soft)
        assert isinstance(cap, int) and files_needed(cap) <= soft and cap <= 4096
    assert connection_cap(None, 4096, 4096) >= 2100  # the idle-connection figure fits
    assert isinstance(connection_cap(None, 200, 200), str)
    assert isinstance(connection_cap(5000, 4096, 4096), str) and connection_cap(100, 4096, 4096) == 100


def test_importing_mlx_lm_for_the_server_keeps_the_open_file_limit():
    code = (
        "import resource\n"
        "before = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "from outlier_tui.server.fd_limit import import_mlx_lm\n"
        "import_mlx_lm()\n"
        "assert resource.getrlimit(resource.RLIMIT_NOFILE) == before, resource.getrlimit(resource.RLIMIT_NOFILE)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_prompt_character_bound_holds_for_the_test_tokenizer(checkpoint_factory):
    from tokenizers import Tokenizer

    checkpoint = checkpoint_factory("qwen3_moe")
    longest = longest_token_chars(checkpoint)
    assert longest is not None and longest >= 1
    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    rng = random.Random(1)
    for _ in range(50):
        text = "".join(rng.choice("ab é\n漢😀<|>") for _ in range(rng.randint(1, 300)))
        assert len(tokenizer.encode(text).ids) * longest >= len(text)
