"""A conversation: history stays well-formed, fits the context, survives interruptions, saves."""

from __future__ import annotations

import json

import pytest

from qwencli.chat import GenerationOptions, collect
from qwencli.errors import ContextOverflow, UsageError
from qwencli.session import Conversation
from tests.fakes import FakeBackend


def roles(conversation):
    return [m.role for m in conversation.messages()]


def test_turns_accumulate_and_are_sent_back():
    backend = FakeBackend(replies=["Hi Bob.", "Your name is Bob."])
    conversation = Conversation(backend, system="Be brief.")
    assert collect(conversation.ask("My name is Bob.")).text == "Hi Bob."
    assert collect(conversation.ask("What is my name?")).text == "Your name is Bob."
    sent, _ = backend.calls[-1]
    assert [m.content for m in sent] == ["Be brief.", "My name is Bob.", "Hi Bob.", "What is my name?"]
    assert roles(conversation) == ["system", "user", "assistant", "user", "assistant"]


def test_interrupted_reply_keeps_what_was_shown():
    backend = FakeBackend(replies=["one two three four five"])
    conversation = Conversation(backend)
    stream = conversation.ask("count")
    assert next(stream).text == "one"
    assert next(stream).text == " two"
    stream.close()  # Ctrl-C
    assert backend.stopped_early.is_set()
    assert roles(conversation) == ["user", "assistant"]
    assert conversation.turns[-1].content == "one two"


def test_reply_interrupted_before_its_first_token_takes_its_question():
    conversation = Conversation(FakeBackend())
    stream = conversation.ask("hello")
    stream.close()
    assert conversation.turns == []


def test_oldest_turns_are_dropped_with_one_notice_and_the_system_prompt_stays():
    notices = []
    backend = FakeBackend(replies=["word " * 20], context_length=120)
    conversation = Conversation(backend, system="Stay.", options=GenerationOptions(max_tokens=20),
                                notice=notices.append)
    for i in range(6):
        collect(conversation.ask(f"question {i} " + "pad " * 10))
    sent, _ = backend.calls[-1]
    assert sent[0].content == "Stay."
    assert sent[-1].content.startswith("question 5")
    assert len(sent) < 12  # older turns went
    assert backend.count_prompt_tokens(sent, GenerationOptions()) + 20 <= 120
    assert len(notices) == 1 and "dropped the oldest turns" in notices[0]
    assert roles(conversation)[:2] == ["system", "user"]


def test_a_single_message_too_long_for_the_context_is_an_error_and_not_kept():
    conversation = Conversation(FakeBackend(context_length=50))
    with pytest.raises(ContextOverflow, match="context holds 50"):
        collect(conversation.ask("word " * 100))
    assert conversation.turns == []


def test_undo_and_regenerate():
    backend = FakeBackend(replies=["first", "second", "third"])
    conversation = Conversation(backend)
    collect(conversation.ask("a"))
    collect(conversation.ask("b"))
    assert collect(conversation.regenerate()).text == "third"
    assert [m.content for m in conversation.turns] == ["a", "first", "b", "third"]
    assert conversation.undo()
    assert [m.content for m in conversation.turns] == ["a", "first"]
    conversation.clear()
    assert not conversation.undo()
    with pytest.raises(UsageError):
        collect(conversation.regenerate())


def test_save_and_load_round_trip(tmp_path):
    conversation = Conversation(FakeBackend(replies=["Paris."]), system="Geography.")
    collect(conversation.ask("Capital of France?"))
    path = tmp_path / "chat.json"
    conversation.save(path)
    data = json.loads(path.read_text())
    assert data["messages"] == [{"role": "user", "content": "Capital of France?"},
                                {"role": "assistant", "content": "Paris."}]
    other = Conversation(FakeBackend())
    other.load(path)
    assert other.system == "Geography." and [m.content for m in other.turns] == ["Capital of France?", "Paris."]


@pytest.mark.parametrize("content", ["not json", '{"messages": 3}', '{"messages": [{"role": "wizard", "content": "x"}]}'])
def test_loading_a_bad_file_is_a_clear_error_and_keeps_the_conversation(tmp_path, content):
    conversation = Conversation(FakeBackend(replies=["kept"]))
    collect(conversation.ask("hello"))
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError, match="not a saved conversation"):
        conversation.load(path)
    assert [m.content for m in conversation.turns] == ["hello", "kept"]
