"""`<think>` splitting and stop strings over streamed pieces, at every possible split point."""

from __future__ import annotations

import pytest

from qwencli.stops import StopFilter
from qwencli.thinking import ThinkingSplitter, initial_mode

QWEN3_REPLY = "<think>\nThe user greets me.\nI greet back.\n</think>\n\nHello! How can I help?"


def split(text: str, mode: str, cuts: list[int]) -> tuple[str, str]:
    splitter = ThinkingSplitter(mode)  # type: ignore[arg-type]
    bounds = [0, *cuts, len(text)]
    chunks = [c for a, b in zip(bounds, bounds[1:]) for c in splitter.feed(text[a:b])]
    chunks += list(splitter.flush())
    reasoning = "".join(c.text for c in chunks if c.kind == "reasoning")
    answer = "".join(c.text for c in chunks if c.kind == "text")
    return reasoning, answer


@pytest.mark.parametrize("cut", range(1, len(QWEN3_REPLY)))
def test_split_survives_any_two_piece_cut(cut):
    assert split(QWEN3_REPLY, "detect", [cut]) == ("The user greets me.\nI greet back.", "Hello! How can I help?")


def test_split_one_character_at_a_time():
    assert split(QWEN3_REPLY, "detect", list(range(1, len(QWEN3_REPLY)))) == (
        "The user greets me.\nI greet back.", "Hello! How can I help?")


def test_qwq_starts_inside_thinking():
    # QwQ's template pre-fills "<think>\n": the reply has only the closing tag.
    assert split("Let me see.\n</think>\n\n42", "reasoning", [5, 14]) == ("Let me see.", "42")


def test_no_thinking_passes_text_untouched():
    assert split("\n\nJust text <b>", "detect", [3]) == ("", "\n\nJust text <b>")
    assert split("<thin", "detect", []) == ("", "<thin")


def test_unfinished_thinking_is_flushed_as_reasoning():
    assert split("<think>\nstill going", "detect", [9]) == ("still going", "")


@pytest.mark.parametrize("prefix,mode", [
    ("<|im_start|>assistant\n", "detect"),
    ("<|im_start|>assistant\n<think>\n", "reasoning"),
    ("<|im_start|>assistant\n<think>\n\n</think>\n\n", "text"),
])
def test_initial_mode_from_the_generation_prompt(prefix, mode):
    assert initial_mode(True, prefix) == mode
    assert initial_mode(False, prefix) == "text"


def stop_run(text: str, stops: list[str], cuts: list[int]) -> tuple[str, bool]:
    f = StopFilter(stops)
    bounds = [0, *cuts, len(text)]
    out = "".join(f.feed(text[a:b]) for a, b in zip(bounds, bounds[1:]))
    return out + f.flush(), f.stopped


@pytest.mark.parametrize("cut", range(1, 20))
def test_stop_string_split_across_pieces_is_never_half_sent(cut):
    text = "Hello there. STOP and more"
    out, stopped = stop_run(text, ["STOP"], [min(cut, len(text) - 1)])
    assert (out, stopped) == ("Hello there. ", True)


def test_text_that_only_looks_like_a_stop_is_kept():
    assert stop_run("a ST b STO", ["STOP"], [3, 4]) == ("a ST b STO", False)


def test_earliest_of_several_stops_wins():
    assert stop_run("one\n\nUser: two", ["User:", "\n\n"], [2, 7]) == ("one", True)
