"""Images in the REPL without a model: paths typed in a message (repl/image_paths.py, attached as
`ollama run` does), /save and /load keeping images by path and sha256 (session.py), and the
stats line saying what each image cost. The scripted backend (tests/fakes.py) stands in."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest

from qwencli.chat import Completion, Timings, Usage
from qwencli.console import stats_line
from qwencli.errors import InvalidImage
from qwencli.images import image_from_bytes, image_from_file
from qwencli.repl.commands import ReplState, find
from qwencli.repl.image_paths import image_paths, without
from qwencli.session import Conversation
from tests.fakes import FakeBackend


def png(color: str, size: tuple[int, int] = (8, 6)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def pictures(tmp_path) -> Path:
    (tmp_path / "red.png").write_bytes(png("red"))
    (tmp_path / "my cat.jpg").write_bytes(png("blue"))  # a PNG named .jpg: the bytes decide
    (tmp_path / "notes.txt").write_text("text")
    return tmp_path


def test_typed_image_paths_are_found_and_other_words_stay(pictures):
    red, cat = pictures / "red.png", pictures / "my cat.jpg"
    cases = {
        f"what is in {red}?": [(str(red), red)],
        f"compare '{cat}' and {red}, please": [(f"'{cat}'", cat), (str(red), red)],
        f'"{cat}" here': [(f'"{cat}"', cat)],
        str(cat).replace(" ", "\\ ") + " ok": [(str(cat).replace(" ", "\\ "), Path(str(cat)))],
        f"{pictures}/missing.png and {pictures}/notes.txt": [],
        "a.png is a file name": [],
    }
    for text, expected in cases.items():
        assert image_paths(text) == expected, text
    assert without(f"what is in {red}?", [str(red)]) == "what is in ?"
    assert without(f"describe {red} briefly", [str(red)]) == "describe briefly"


def state_for(backend: FakeBackend, said: list[str], projector: bool = True) -> ReplState:
    if projector:
        backend.info = dataclasses.replace(backend.info, projector=Path("/models/mmproj.gguf"))
    return ReplState(Conversation(backend), say=said.append)


def test_a_typed_path_is_attached_said_and_taken_out_of_the_text(pictures):
    backend, said = FakeBackend(), []
    state = state_for(backend, said)
    text = state.take_attachments(f"What is in {pictures / 'red.png'}?")
    assert text == "What is in ?"
    assert said == [f"Added image {pictures / 'red.png'} (8×6)."]
    list(state.conversation.ask(text))
    [question] = [m for m in backend.calls[0][0] if m.role == "user"]
    assert [i.sha256 for i in question.images] == [image_from_file(pictures / "red.png").sha256]
    assert question.images[0].source == str((pictures / "red.png").resolve())


def test_a_text_model_leaves_a_typed_path_as_words_and_a_bad_image_is_one_clear_error(pictures):
    backend, said = FakeBackend(), []
    state = state_for(backend, said, projector=False)
    typed = f"What is in {pictures / 'red.png'}?"
    assert state.take_attachments(typed) == typed and said == []
    broken = pictures / "broken.png"
    broken.write_bytes(png("red", (64, 64))[:60])
    vision = state_for(FakeBackend(), said)
    with pytest.raises(InvalidImage, match="truncated"):
        vision.take_attachments(f"look at {broken}")
    assert vision.conversation.attachments == []


def test_save_keeps_images_by_path_and_hash_and_load_says_what_is_missing_or_changed(pictures, tmp_path):
    backend, said = FakeBackend(replies=["A red square.", "Blue.", "Yes."]), []
    state = state_for(backend, said)
    for line in (f"/image {pictures / 'red.png'}", f"/image {pictures / 'my cat.jpg'}"):
        command, arg = find(line)
        command.handler(state, arg)
    list(state.conversation.ask("What are these?"))
    state.conversation.attachments.append(image_from_bytes(png("green"), "-"))  # from stdin: no path
    list(state.conversation.ask("And this?"))
    saved = tmp_path / "chat.json"
    command, arg = find(f"/save {saved}")
    command.handler(state, arg)
    data = json.loads(saved.read_text())
    first = data["messages"][0]
    assert first["images"] == [{"path": str((pictures / "red.png").resolve()),
                                "sha256": image_from_file(pictures / "red.png").sha256},
                               {"path": str((pictures / "my cat.jpg").resolve()),
                                "sha256": image_from_file(pictures / "my cat.jpg").sha256}]
    assert data["messages"][2]["images"] == [{"path": None, "sha256": image_from_bytes(png("green")).sha256}]
    assert len(saved.read_text()) < 2000  # hashes, not inline bytes

    def load() -> list[str]:
        said.clear()
        fresh = state_for(FakeBackend(), said)
        command, arg = find(f"/load {saved}")
        command.handler(fresh, arg)
        state.conversation = fresh.conversation
        return said

    assert load() == [f"Loaded 2 exchanges from {saved} with 2 image(s).",
                      "message 3: an image that was not from a file (stdin) was not saved; left out"]
    assert [i.source for i in state.conversation.turns[0].images] == [
        str((pictures / "red.png").resolve()), str((pictures / "my cat.jpg").resolve())]
    (pictures / "red.png").write_bytes(png("purple"))
    (pictures / "my cat.jpg").unlink()
    lines = load()
    assert lines[0] == f"Loaded 2 exchanges from {saved}."
    assert lines[1].startswith(f"message 1: the saved image {(pictures / 'red.png').resolve()} changed since it was saved")
    assert lines[2] == f"message 1: the saved image {(pictures / 'my cat.jpg').resolve()} is missing; left out"
    assert state.conversation.turns[0].images == ()


def test_the_stats_line_says_what_each_image_cost():
    timings = Timings(prompt_seconds=0.1, generation_seconds=0.1, first_token_seconds=0.1)
    two = Completion(text="x", reasoning="", finish_reason="stop",
                     usage=Usage(prompt_tokens=200, completion_tokens=4, image_tokens=(64, 96)),
                     timings=timings)
    assert " · 2 images 64 + 96 tokens · " in stats_line(two)
    one = dataclasses.replace(two, usage=Usage(prompt_tokens=80, completion_tokens=4, image_tokens=(64,)))
    assert " · 1 image 64 tokens · " in stats_line(one)
    none = dataclasses.replace(two, usage=Usage(prompt_tokens=80, completion_tokens=4))
    assert "image" not in stats_line(none)
