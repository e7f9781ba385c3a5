"""Slash commands, driven through the table with a fake backend."""

from __future__ import annotations

import pytest

from qwencli.chat import collect
from qwencli.errors import UsageError
from qwencli.repl import commands
from qwencli.session import Conversation
from tests.fakes import FakeBackend


@pytest.fixture
def state():
    said = []
    st = commands.ReplState(Conversation(FakeBackend(replies=["a", "b", "c"])), say=said.append)
    st.said = said  # type: ignore[attr-defined]
    return st


def run(state, line):
    command, arg = commands.find(line)
    out = command.handler(state, arg)
    return collect(out).text if out is not None else None


def test_every_command_is_in_help(state):
    run(state, "/help")
    for command in commands.COMMANDS:
        assert command.name in state.said[-1]


def test_set_changes_options_and_checks_values(state):
    run(state, "/set temperature 0.2")
    run(state, "/set top-k 5")
    run(state, "/set think off")
    options = state.conversation.options
    assert (options.temperature, options.top_k, options.think) == (0.2, 5, False)
    for bad in ("/set temperature hot", "/set temperature 9", "/set top_k -1", "/set nonsense 1", "/set think maybe"):
        with pytest.raises(UsageError):
            run(state, bad)
    assert state.conversation.options.temperature == 0.2


def test_system_clear_undo_regen(state):
    run(state, "/system Be terse.")
    assert state.conversation.system == "Be terse."
    collect(state.conversation.ask("one"))
    assert run(state, "/regen") == "b"
    run(state, "/undo")
    assert state.conversation.turns == []
    collect(state.conversation.ask("two"))
    run(state, "/clear")
    assert state.conversation.turns == [] and state.conversation.system == "Be terse."


def test_read_attaches_a_file_to_the_next_message(state, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("The answer is 42.\n")
    run(state, f"/read {note}")
    message = state.take_attachments("What is the answer?")
    assert "note.txt" in message and "The answer is 42." in message and message.endswith("What is the answer?")
    assert state.take_attachments("again") == "again"
    with pytest.raises(UsageError, match="no such file"):
        run(state, f"/read {tmp_path / 'missing.txt'}")
    with pytest.raises(UsageError, match="directory"):
        run(state, f"/read {tmp_path}")


def test_save_and_load(state, tmp_path):
    collect(state.conversation.ask("hello"))
    run(state, f"/save {tmp_path / 'c.json'}")
    run(state, "/clear")
    run(state, f"/load {tmp_path / 'c.json'}")
    assert [m.content for m in state.conversation.turns] == ["hello", "a"]
    with pytest.raises(UsageError, match="cannot write"):
        run(state, f"/save {tmp_path / 'no' / 'such' / 'dir.json'}")


def test_show_reports_context_and_settings(state):
    collect(state.conversation.ask("hello there"))
    run(state, "/show")
    shown = state.said[-1]
    assert "fake" in shown and "/ 4096 tokens" in shown and "temperature" in shown


def test_unknown_command_and_plain_text(state):
    with pytest.raises(UsageError, match="unknown command /frobnicate"):
        commands.find("/frobnicate now")
    assert commands.find("just text") is None
    assert commands.find("/EXIT")[0].name == "/bye"


def test_image_needs_a_projector_and_an_image(state, tmp_path):
    with pytest.raises(UsageError, match="without a vision projector"):
        run(state, f"/image {tmp_path / 'x.png'}")
    assert state.conversation.attachments == []


def test_image_on_torch_needs_a_vision_tower(state, tmp_path):
    import dataclasses
    import io

    from PIL import Image

    backend = state.conversation.backend
    backend.info = dataclasses.replace(backend.info, backend="torch")
    with pytest.raises(UsageError, match="no vision tower"):
        run(state, f"/image {tmp_path / 'x.png'}")
    out = io.BytesIO()
    Image.new("RGB", (4, 3), "red").save(out, "PNG")
    (tmp_path / "x.png").write_bytes(out.getvalue())
    backend.info = dataclasses.replace(backend.info, vision_tower=True)
    run(state, f"/image {tmp_path / 'x.png'}")
    assert [i.width for i in state.conversation.attachments] == [4]
