"""The decode-prefetch judge: prefetch stays on while its wrong guesses cost less read time than
the compute they overlap, and switching it per token never changes what is computed."""

import itertools

import numpy as np
import pytest
from checkpoints import resident_oracle
from oracle import greedy_run

from engine.decode_prefetch import DecodePrefetchJudge
from engine.loader import LoadOptions, load_streamed_model


def feed(judge, tokens, token_s, io_wait_s, wasted):
    return [judge.add_token(token_s, io_wait_s, wasted) for _ in range(tokens)]


def test_starts_off_and_judges_the_guesses_it_did_not_read():
    # 4 wrong guesses x 60 ms read = 0.24 s per token against 0.2 s of compute (margin 0.5):
    # counted while prefetch is off, so it never has to run a losing window to find out
    judge = DecodePrefetchJudge(read_s=0.06, window=4)
    assert feed(judge, 4, token_s=1.2, io_wait_s=1.0, wasted=4) == [False] * 4
    assert judge.wasted_per_token == 4 and judge.cost_s == 0.24
    # the disk gets faster (3 ms a read): on after two cheap windows, off after one dear one
    assert [judge.add_token(0.21, 0.01, 4, read_s=0.003) for _ in range(8)] == [False] * 7 + [True]
    assert [judge.add_token(1.2, 1.0, 4, read_s=0.06) for _ in range(4)] == [True] * 3 + [False]
    assert [on for on, _, _ in judge.history] == [False, False, True, False]


def test_one_cheap_window_between_dear_ones_keeps_it_off():
    judge = DecodePrefetchJudge(read_s=0.066, window=4)  # 0.2 s of compute: the margin is 0.1 s
    for wasted in (6, 1, 6, 1, 1):  # 0.40 s, 0.07 s, 0.40 s, 0.07 s, 0.07 s of wasted reads
        feed(judge, 4, token_s=1.2, io_wait_s=1.0, wasted=wasted)
    assert [on for on, _, _ in judge.history] == [False, False, False, False, True]


def test_idle_disk_turns_it_on():
    # 4 wrong guesses x 3 ms = 12 ms per token against 0.2 s of compute
    judge = DecodePrefetchJudge(read_s=0.003, window=4)
    assert feed(judge, 40, token_s=0.21, io_wait_s=0.01, wasted=4) == [False] * 7 + [True] * 33
    assert len(judge.history) == 10 and judge.history[-1] == pytest.approx((True, 0.012, 0.2))


def test_the_price_of_a_read_comes_from_decoding_not_from_load():
    # timed at load before a bandwidth cap showed (3 ms); decoding measures 66 ms per read:
    # 7 wrong guesses then cost 0.46 s per token against 0.2 s of compute (at 3 ms: 0.02 s, on)
    judge = DecodePrefetchJudge(read_s=0.003, window=4)
    assert not any(judge.add_token(1.2, 1.0, 7, read_s=0.066) for _ in range(8))
    assert judge.read_s == 0.066 and judge.cost_s == pytest.approx(7 * 0.066)
    # a token that read nothing says nothing about the price
    judge = DecodePrefetchJudge(read_s=0.003, window=2)
    assert [judge.add_token(0.21, 0.01, 4, read_s=None) for _ in range(4)] == [False, False, False, True]
    assert judge.read_s == 0.003


def test_no_wrong_guesses_costs_nothing():
    judge = DecodePrefetchJudge(read_s=10.0, window=2)
    assert feed(judge, 6, token_s=0.1, io_wait_s=0.0, wasted=0) == [False] * 3 + [True] * 3


class ScriptedJudge:
    """Turns decode prefetch on and off every token: the streamer must follow, exactly."""

    def __init__(self):
        self.script = itertools.cycle([False, True, True, False])
        self.on = True
        self.tokens = 0

    def add_token(self, token_s, io_wait_s, wasted_reads, read_s=None):
        self.tokens += 1
        self.on = next(self.script)
        return self.on


def test_switching_decode_prefetch_per_token_keeps_logits_identical(checkpoint_factory):
    path = checkpoint_factory("mixtral")
    oracle_model, tokenizer = resident_oracle(path)
    want_tokens, want_logits = greedy_run(oracle_model, tokenizer, steps=16)
    info = load_streamed_model(path, None, LoadOptions(prefetch=False)).info
    loaded = load_streamed_model(path, info.expert_bytes * (info.top_k + 3), LoadOptions(prefetch=True))
    streamer = loaded.streamer
    judge = streamer.decode_judge = ScriptedJudge()
    seen = []

    def after_step():
        streamer.after_decode_token(0.01)
        seen.append(streamer.mode.decode)

    try:
        got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=16, after_step=after_step)
        cache = streamer.sole_group().cache
        issued, shadowed = cache.prefetch_issued, cache.shadow_wasted
    finally:
        loaded.close()
    assert got_tokens == want_tokens
    np.testing.assert_array_equal(np.array(got_logits), np.array(want_logits))
    assert judge.tokens == 16 and seen == [on for on, _ in zip(itertools.cycle([False, True, True, False]), seen)]
    assert issued > 0 and shadowed > 0  # guesses read while on, only counted while off
