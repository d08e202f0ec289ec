"""The one function behind `outlier generate` and pipe mode: what reaches stdout and
stderr, and the exit status for every way an answer ends."""

from __future__ import annotations

import io
import signal

import pytest

from engine.api import GenerationDone, GenerationFailed, GenerationParams, TextDelta
from engine.fake import FakeEngine
from outlier_tui.core.chat import one_off_turn
from outlier_tui.one_shot import answer_once
from outlier_tui.termination import Terminated


class ScriptedEngine(FakeEngine):
    """Streams `events`; an exception in them is raised there (a signal arriving mid-answer)."""

    def __init__(self, events):
        super().__init__()
        self.events = events
        self.cancelled = 0

    def generate(self, messages, params):
        for event in self.events:
            if isinstance(event, BaseException):
                raise event
            yield event

    def cancel(self):
        self.cancelled += 1


def _answer(events, **kw):
    engine = ScriptedEngine(events)
    out, err = io.StringIO(), io.StringIO()
    answered = answer_once(lambda on_part: one_off_turn(engine, "q", GenerationParams(), on_part), out, err, **kw)
    return answered, out.getvalue(), err.getvalue(), engine


def test_answer_on_stdout_thinking_on_stderr_only_when_asked():
    events = [TextDelta("hmm", 1, kind="thinking"), TextDelta("Yes.", 2), GenerationDone(stats=None)]
    answered, out, err, _ = _answer(events, show_thinking=True)
    assert (answered.status, out, err) == (0, "Yes.\n", "hmm\n")
    answered, out, err, _ = _answer(events)
    assert (answered.status, out, err) == (0, "Yes.\n", "")


def test_a_failure_is_one_line_and_status_1():
    answered, out, err, _ = _answer([TextDelta("par", 1), GenerationFailed("the disk went away")])
    assert answered.status == 1 and out == "par\n" and err == "outlier: the disk went away\n"


@pytest.mark.parametrize(
    "stop, status, line",
    [
        (KeyboardInterrupt(), 130, "outlier: interrupted\n"),
        (Terminated(signal.SIGTERM), 143, "outlier: stopped by SIGTERM\n"),
        (Terminated(signal.SIGHUP), 129, "outlier: stopped by SIGHUP\n"),
    ],
)
def test_a_signal_mid_answer_keeps_the_text_and_exits_128_plus_it(stop, status, line):
    answered, out, err, engine = _answer([TextDelta("half an ans", 1), stop])
    assert (answered.status, out, err) == (status, "half an ans\n", line)
    assert engine.cancelled == 1 and answered.result.status == "cancelled"
