"""Qwen3-Coder XML tool calls (Qwen3-Coder, Qwen3.5 and later): found in a reply however it is
split into pieces, arguments typed by the tool's schema, malformed calls kept as text, the
forced-call grammar accepted by llama.cpp and xgrammar, and the dialect read from the template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwencli.chat import ToolCall
from qwencli.server.tools import Text, call_stream, forced_grammar
from qwencli.server.tools.arguments import typed_arguments
from qwencli.templates import ChatTemplate

SDIST = Path("/work/sdist/llama_cpp_python-0.3.36")
TEMPLATES = SDIST / "vendor/llama.cpp/models/templates"
CONFIGS = SDIST / "examples/server/configs"

WRITE = {"type": "function", "function": {"name": "write_file", "parameters": {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "content": {"type": "string"},
        "mode": {"type": "integer"},
        "ratio": {"type": "number"},
        "overwrite": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "object"},
        "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "note": {"type": ["string", "null"]},
        "code": {"type": "string"},
    },
    "required": ["path", "content"]}}}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}
TOOLS = [WRITE, WEATHER]

FIRST = (
    "<tool_call>\n<function=write_file>\n"
    "<parameter=path>\n/tmp/a.py\n</parameter>\n"
    "<parameter=content>\ndef f():\n    return '</tool_call>' + \"</function>\"\n\n</parameter>\n"
    "<parameter=mode>\n644\n</parameter>\n"
    "<parameter=ratio>\n0.5\n</parameter>\n"
    "<parameter=overwrite>\nTrue\n</parameter>\n"
    "<parameter=tags>\n[\"a\", \"b\"]\n</parameter>\n"
    "<parameter=meta>\n{\"k\": {\"n\": 1}}\n</parameter>\n"
    "<parameter=limit>\nnull\n</parameter>\n"
    "<parameter=note>\nNone\n</parameter>\n"
    "<parameter=code>\n007\n</parameter>\n"
    "<parameter=extra>\n{\"x\": 1}\n</parameter>\n"
    "<parameter=comment>\nnot json\n</parameter>\n"
    "</function>\n</tool_call>"
)
FIRST_ARGS = {
    "path": "/tmp/a.py",
    "content": "def f():\n    return '</tool_call>' + \"</function>\"\n",  # one newline off each side, no more
    "mode": 644, "ratio": 0.5, "overwrite": True, "tags": ["a", "b"], "meta": {"k": {"n": 1}},
    "limit": None, "note": None,
    "code": "007",  # a string parameter keeps its text, digits and all
    "extra": {"x": 1}, "comment": "not json",  # not in the schema: JSON if it parses, else text
}
SECOND = "<tool_call>\n<function=get_weather>\n<parameter=city>\nSão Paulo\n</parameter>\n</function>\n</tool_call>"
REPLY = "Writing it now. \n\n" + FIRST + "\n" + SECOND


def run(pieces, tools=TOOLS, **kwargs):
    stream = call_stream("xml", tools, **kwargs)
    events = [e for piece in pieces for e in stream.feed(piece)] + list(stream.finish())
    text = "".join(e.text for e in events if isinstance(e, Text))
    calls = [e for e in events if isinstance(e, ToolCall)]
    return text, [(c.name, json.loads(c.arguments)) for c in calls], calls


def splits(text: str):
    """The text in pieces of every size, and cut in two at every position."""
    for size in range(1, 24):
        yield [text[i:i + size] for i in range(0, len(text), size)]
    for cut in range(len(text) + 1):
        yield [text[:cut], text[cut:]]


def token_pieces(text: str, qwen_tokenizer: Path) -> list[str]:
    """`text` as the pieces a Qwen model streams: one decoded token each."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(qwen_tokenizer / "tokenizer.json"))
    return [tokenizer.decode([i], skip_special_tokens=False) for i in tokenizer.encode(text).ids]


def test_calls_are_found_and_typed_at_every_split():
    expected = ("Writing it now.", [("write_file", FIRST_ARGS), ("get_weather", {"city": "São Paulo"})])
    for pieces in splits(REPLY):
        text, calls, raw = run(pieces)
        assert (text, calls) == expected, pieces
    assert all(c.id.startswith("call_") for c in raw) and raw[0].id != raw[1].id


def test_calls_are_found_in_qwen_token_pieces(qwen_tokenizer):
    pieces = token_pieces(REPLY, qwen_tokenizer)
    assert "".join(pieces) == REPLY and len(pieces) > 50
    _, calls, _ = run(pieces)
    assert calls == [("write_file", FIRST_ARGS), ("get_weather", {"city": "São Paulo"})]


@pytest.mark.parametrize("reply", [
    "<tool_call>\n<function=get_weather>\nParis\n</function>\n</tool_call> and on",  # a value without a tag
    "<tool_call>\n{\"name\": \"get_weather\"}\n</tool_call>",  # Hermes JSON from an XML model
    "<tool_call>\n<function=get\nweather>\n</function>\n</tool_call>",  # a newline in the name
    "<tool_call>\n<function=get_weather>\n</function>\ntrailing text</tool_call>",
    "a <tool_cal b <tool_call",  # only looks like a tag
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis",  # cut off by max_tokens
])
def test_a_malformed_or_cut_off_call_stays_text_at_every_split(reply):
    for pieces in splits(reply):
        text, calls, _ = run(pieces)
        assert (text, calls) == (reply, []), pieces


def test_a_call_after_a_malformed_one_is_still_found():
    reply = "<tool_call>\noops\n" + SECOND
    for pieces in splits(reply):
        text, calls, _ = run(pieces)
        assert (text, calls) == ("<tool_call>\noops", [("get_weather", {"city": "São Paulo"})]), pieces


def test_a_reply_that_ends_after_the_function_is_a_call():
    reply = SECOND.removesuffix("</tool_call>")  # stopped at EOS before the closing tag
    assert run([reply])[1] == [("get_weather", {"city": "São Paulo"})]


def test_a_known_function_without_its_tool_call_tag_is_a_call():
    # Qwen3-Coder sometimes leaves the opening tag out; llama.cpp accepts it for known names.
    bare = SECOND.removeprefix("<tool_call>\n")
    for pieces in splits("Sure.\n" + bare):
        text, calls, _ = run(pieces)
        assert (text, calls) == ("Sure.", [("get_weather", {"city": "São Paulo"})]), pieces
    unknown = bare.replace("get_weather", "launch")
    assert run([unknown]) [:2] == (unknown, [])


def test_values_lose_exactly_one_newline_each_side():
    body = "<tool_call>\n<function=get_weather>\n<parameter=city>\n\n  two lines\nhere \n\n</parameter>\n</function>\n</tool_call>"
    assert run([body])[1] == [("get_weather", {"city": "\n  two lines\nhere \n"})]
    tight = "<tool_call><function=get_weather><parameter=city>Rome</parameter></function></tool_call>"
    assert run([tight])[1] == [("get_weather", {"city": "Rome"})]


def test_first_only_keeps_one_call_and_parallel_calls_keep_their_order():
    assert [c[0] for c in run([REPLY], first_only=True)[1]] == ["write_file"]
    assert [c[0] for c in run([SECOND + "\n" + FIRST])[1]] == ["get_weather", "write_file"]


@pytest.mark.parametrize("schema, raw, value", [
    ({"type": "integer"}, "42", 42),
    ({"type": "integer"}, " -7 ", -7),
    ({"type": "integer"}, "3.0", 3),
    ({"type": "integer"}, "3.5", "3.5"),  # not an integer: the text, never a failed call
    ({"type": "number"}, "1e3", 1000.0),
    ({"type": "number"}, "2", 2),
    ({"type": "number"}, "1e999 ", "1e999"),  # no JSON number: the text, without the layout
    ({"type": "boolean"}, "false", False),
    ({"type": "boolean"}, "True", True),  # as the template writes a Python bool
    ({"type": "boolean"}, "yes", "yes"),
    ({"type": "null"}, "None", None),
    ({"type": "array"}, "[1, 2]", [1, 2]),
    ({"type": "array"}, "{\"a\": 1}", "{\"a\": 1}"),
    ({"type": "object"}, "{\"a\": [1]}", {"a": [1]}),
    ({"type": "string"}, "true", "true"),
    ({"type": "string"}, " padded\n", " padded\n"),
    ({"type": "string"}, "\"quoted\"", "\"quoted\""),
    ({"enum": [1, 2, 3]}, "2", 2),
    ({"enum": ["a", "b"]}, "2", "2"),
    ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, "12", 12),  # non-string types first
    ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, " twelve\n", " twelve\n"),
    ({"oneOf": [{"type": "object"}, {"type": "boolean"}]}, "false", False),
    ({"type": "string", "nullable": True}, "null", None),
    ({"$ref": "#/$defs/n"}, "5", 5),
    ({}, "[1]", [1]),  # no type: JSON if it parses
    ({"description": "free"}, "hello", "hello"),
])
def test_raw_values_are_typed_by_the_schema(schema, raw, value):
    parameters = {"type": "object", "properties": {"p": schema}, "$defs": {"n": {"type": "integer"}}}
    typed = typed_arguments([("p", raw)], parameters)["p"]
    assert typed == value and type(typed) is type(value)


# -- the forced-call grammar ------------------------------------------------------------------


def _rendered_call(template: str, arguments: dict) -> str:
    """A call as the model's own template writes it in a conversation's history."""
    from qwencli.chat import Message

    prompt = ChatTemplate(template).render(
        [Message("user", "x"), Message("assistant", "", tool_calls=(ToolCall("c1", "write_file", json.dumps(arguments)),))],
        add_generation_prompt=False)
    return prompt[prompt.index("<tool_call>"):prompt.rindex("</tool_call>") + len("</tool_call>")]


def _matcher(grammar: str):
    xgrammar = pytest.importorskip("xgrammar")
    compiled = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo(["a"])).compile_grammar(grammar)
    return xgrammar, compiled


def _accepts(grammar_parts, text: str) -> bool:
    xgrammar, compiled = grammar_parts
    matcher = xgrammar.GrammarMatcher(compiled, terminate_without_stop_token=True)
    return matcher.accept_string(text) and matcher.is_terminated()


@pytest.mark.parametrize("several", [False, True])
def test_the_forced_grammar_compiles_in_llama_cpp_and_xgrammar(several):
    from llama_cpp.llama_grammar import LlamaGrammar

    grammar = forced_grammar("xml", TOOLS + [{"type": "function", "function": {"name": "ping"}}], several=several)
    assert grammar.startswith("root ::=")
    LlamaGrammar.from_string(grammar, verbose=False)
    _matcher(grammar)


def test_the_forced_grammar_holds_the_template_s_own_calls_and_no_other():
    grammar = _matcher(forced_grammar("xml", TOOLS, several=True))
    arguments = {"path": "a\n</tool_call>\n<b>", "content": "x", "mode": 644, "overwrite": False,
                 "tags": ["t"], "limit": None}
    call = _rendered_call((TEMPLATES / "Qwen3-Coder.jinja").read_text(), arguments)
    assert _accepts(grammar, call)
    assert _accepts(grammar, call + "\n" + SECOND)  # parallel calls
    assert _accepts(grammar, SECOND)  # optional parameters may be left out
    assert not _accepts(grammar, SECOND.replace("São Paulo", "a</parameter>b"))  # a value cannot close early
    assert not _accepts(grammar, call.replace("644", "six"))  # an integer is an integer
    assert not _accepts(grammar, SECOND.replace("<parameter=city>\nSão Paulo\n</parameter>\n", ""))  # required
    assert not _accepts(grammar, SECOND.replace("get_weather", "launch"))  # only the offered tools
    # What the grammar lets through, the parser reads back as the schema's types.
    assert run([call])[1] == [("write_file", arguments)]


def test_a_named_choice_forces_that_function():
    grammar = _matcher(forced_grammar("xml", [WEATHER], several=False))
    assert _accepts(grammar, SECOND)
    assert not _accepts(grammar, SECOND + "\n" + SECOND)
    assert not _accepts(grammar, "Sure. " + SECOND)


def test_enum_and_const_values_are_their_raw_text():
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "unit": {"enum": ["c", "f"]}, "n": {"const": 3}}, "required": ["unit", "n"]}}}
    grammar = _matcher(forced_grammar("xml", [tool], several=False))
    call = "<tool_call>\n<function=f>\n<parameter=unit>\n{}\n</parameter>\n<parameter=n>\n3\n</parameter>\n</function>\n</tool_call>"
    assert _accepts(grammar, call.format("c")) and not _accepts(grammar, call.format("\"c\""))


@pytest.mark.parametrize("key", ["a>b", "a<b", "two\nlines", " padded", ""])
def test_a_parameter_name_xml_cannot_carry_is_refused(key):
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        key: {"type": "string"}}}}}
    with pytest.raises(ValueError, match="cannot be written"):
        forced_grammar("xml", [tool], several=False)


# -- which dialect ----------------------------------------------------------------------------


def _config_template(name: str) -> str:
    return "".join(json.loads((CONFIGS / name).read_text())["model"]["chat_template"])


@pytest.mark.parametrize("source, dialect", [
    (lambda: (TEMPLATES / "Qwen3-Coder.jinja").read_text(), "xml"),
    (lambda: (TEMPLATES / "Qwen3.5-4B.jinja").read_text(), "xml"),
    (lambda: _config_template("qwen3.5-0.8b.json"), "xml"),
    (lambda: _config_template("qwen3.6-27b.json"), "xml"),
    (lambda: (TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text(), "hermes"),
    (lambda: (TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text(), "hermes"),
    (lambda: (TEMPLATES / "Qwen-QwQ-32B.jinja").read_text(), "hermes"),
])
def test_the_dialect_follows_from_the_template(source, dialect):
    assert ChatTemplate(source()).tool_dialect == dialect


def test_an_unknown_fine_tune_with_an_xml_template_is_read_as_xml():
    renamed = (TEMPLATES / "Qwen3-Coder.jinja").read_text().replace("You are Qwen", "You are Bob")
    template = ChatTemplate(renamed)
    assert template.tool_dialect == "xml"
    assert ChatTemplate(None).tool_dialect == "hermes"


# -- a call inside the thinking ----------------------------------------------------------------


def _assemble(chunks, dialect="xml"):
    from qwencli.chat import Chunk, GenerationOptions
    from qwencli.server.jobs import Job
    from qwencli.server.responses import Assembler

    job = Job(model="m", kind="chat", options=GenerationOptions(), stream=True, include_usage=False,
              tools=tuple(TOOLS), tool_mode="auto", tool_dialect=dialect)
    assembler = Assembler(job, "m")
    deltas = [d for c in chunks for d in assembler.feed(c)] + assembler.feed(Chunk(finish_reason="stop"))
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content", "") for d in deltas)
    calls = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for d in deltas
             for c in d.get("tool_calls", ())]
    return reasoning, content, calls, assembler.finish_reason


def test_a_call_opened_inside_the_thinking_is_a_call_at_every_split():
    """Qwen3.5 may write `<tool_call>` before `</think>` (llama.cpp ends reasoning there too);
    the thinking split hands all of that over as reasoning."""
    from qwencli.chat import Chunk

    thinking = "The user wants the weather.\n\n" + SECOND
    for pieces in splits(thinking):
        chunks = [Chunk(p, kind="reasoning") for p in pieces if p]
        assert _assemble(chunks) == ("The user wants the weather.", "",
                                     [("get_weather", {"city": "São Paulo"})], "tool_calls"), pieces


def test_reasoning_without_a_call_stays_reasoning():
    from qwencli.chat import Chunk

    for pieces in splits("Think <tool about it\n"):
        chunks = [Chunk(p, kind="reasoning") for p in pieces if p] + [Chunk("Answer.")]
        assert _assemble(chunks) == ("Think <tool about it\n", "Answer.", [], "stop"), pieces
    # Hermes models (Qwen3) keep what they think to themselves, tags and all.
    hermes = [Chunk("<tool_call>\n{\"name\": \"f\"}\n</tool_call>", kind="reasoning")]
    assert _assemble(hermes, dialect="hermes")[2] == []


def test_free_text_is_exactly_the_text_without_a_closing_parameter_tag():
    import random

    from qwencli.server.tools.xml_grammar import free_text_rules

    grammar = _matcher("root ::= xml-text\n" + "\n".join(free_text_rules()))
    rng = random.Random(7)
    alphabet = list("</parameter>") + ["x", "\n", "<", "/", "é"]
    for _ in range(1500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        if rng.random() < 0.4:  # plant a start of the tag, sometimes all of it
            text = text[:4] + "</parameter>"[:rng.randint(1, 12)] + text[4:]
        assert _accepts(grammar, text) == ("</parameter>" not in text), repr(text)
