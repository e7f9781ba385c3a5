"""The torch backend in this process, on CPU, with the tiny random-weight Qwen2/Qwen3 folders
(tests/fixtures/tiny_qwen.py: Qwen2 answers "Hello world", Qwen3 thinks "Reason" and answers
"Answer"; "Loop" repeats forever). One load per model for the whole module."""

from __future__ import annotations

import codecs
import json
import shutil
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from qwencli.backends.base import LoadOptions  # noqa: E402
from qwencli.backends.torch_backend import TorchBackend  # noqa: E402
from qwencli.chat import GenerationOptions, Message, collect  # noqa: E402
from qwencli.errors import BackendUnavailable, InvalidModelFile, UnsupportedModel, UsageError  # noqa: E402
from qwencli.formats.hf_folder import check_folder, generation_defaults  # noqa: E402

GREEDY = GenerationOptions(temperature=0)
HI = [Message("user", "hi")]


@pytest.fixture(scope="module")
def qwen2(tiny_qwen2_hf):
    backend = TorchBackend(tiny_qwen2_hf, LoadOptions(device="cpu"))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def qwen3(tiny_qwen3_hf):
    backend = TorchBackend(tiny_qwen3_hf, LoadOptions(device="cpu"))
    yield backend
    backend.close()


def test_loads_on_cpu_in_fp32_and_describes_itself(qwen2):
    info = qwen2.info
    assert info.backend == "torch" and info.architecture == "qwen2" and info.family == "qwen"
    assert info.quantization == "float32" and "cpu float32" in info.context_reason
    assert info.trained_context == 32768 and info.context_length == 8192
    assert info.parameters and info.parameters > 1_000_000
    assert qwen2._end_tokens >= {qwen2.tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                 qwen2.tokenizer.convert_tokens_to_ids("<|endoftext|>")}


def test_greedy_answer_stops_on_im_end_and_counts_tokens(qwen2):
    done = collect(qwen2.chat(HI, GREEDY))
    assert (done.text, done.reasoning, done.finish_reason) == ("Hello world", "", "stop")
    assert done.usage.completion_tokens == 2
    assert done.usage.prompt_tokens == qwen2.count_prompt_tokens(HI, GREEDY)
    assert done.timings.generation_seconds >= 0 and done.timings.first_token_seconds > 0


def test_default_sampling_comes_from_generation_config(qwen2, tiny_qwen2_hf):
    assert generation_defaults(tiny_qwen2_hf) == GenerationOptions(temperature=0.7, top_p=0.8, top_k=20,
                                                                   repeat_penalty=1.05)
    resolved = qwen2._options(GenerationOptions(top_k=5))
    assert (resolved.temperature, resolved.top_p, resolved.top_k, resolved.repeat_penalty) == (0.7, 0.8, 5, 1.05)
    # The planted chain is sharp enough that sampling with those settings still says it.
    assert collect(qwen2.chat(HI, GenerationOptions(seed=7))).text == "Hello world"


def test_stop_string_and_max_tokens(qwen2):
    stopped = collect(qwen2.chat(HI, GREEDY.replace(stop=("world",))))
    assert stopped.text.strip() == "Hello" and stopped.finish_reason == "stop"
    capped = collect(qwen2.complete("Loop", GREEDY.replace(max_tokens=5)))
    assert capped.text == "Loop" * 5 and capped.finish_reason == "length"
    assert capped.usage.completion_tokens == 5


def test_thinking_split_on_and_off(qwen3):
    on = collect(qwen3.chat(HI, GREEDY))
    assert (on.reasoning, on.text, on.finish_reason) == ("Reason", "Answer", "stop")
    off = collect(qwen3.chat(HI, GREEDY.replace(think=False)))
    assert (off.reasoning, off.text) == ("", "Answer")
    assert qwen3.render(HI, GREEDY.replace(think=False)).endswith("<think>\n\n</think>\n\n")


def test_kv_cache_is_reused_across_turns(qwen2):
    first = collect(qwen2.chat(HI, GREEDY))
    turn2 = [*HI, Message("assistant", first.text), Message("user", "and again")]
    second = collect(qwen2.chat(turn2, GREEDY))
    assert second.text == "Hello world"
    assert second.usage.cached_tokens >= first.usage.prompt_tokens
    # A different conversation shares only the system prompt's tokens, and answers the same.
    other = collect(qwen2.chat([Message("user", "something else entirely")], GREEDY))
    assert other.text == "Hello world" and 0 < other.usage.cached_tokens < first.usage.prompt_tokens


def test_closing_the_stream_stops_generation_between_tokens(qwen2):
    stream = qwen2.complete("Loop", GREEDY.replace(max_tokens=100_000))
    for _ in range(3):
        assert next(stream).text == "Loop"
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 2.0
    # The engine is free and its cache consistent: the next request answers normally.
    assert collect(qwen2.chat(HI, GREEDY)).text == "Hello world"


def test_cancelled_stream_reports_cancelled_in_its_last_chunk(qwen2):
    import threading

    ids = qwen2.tokenize("Loop")
    cancel = threading.Event()
    chunks = []

    def emit(chunk):
        chunks.append(chunk)
        if len(chunks) == 4:
            cancel.set()

    qwen2._generate(ids, qwen2._options(GREEDY.replace(max_tokens=1000)), "text", cancel, emit)
    assert chunks[-1].finish_reason == "cancelled" and chunks[-1].usage.completion_tokens == 4


def test_detokenization_is_utf8_safe_across_tokens(qwen2):
    text = "héllo 世界 🙂 Ünïcödé"
    decoder = codecs.getincrementaldecoder("utf-8")()
    pieces = [decoder.decode(qwen2._piece(t)) for t in qwen2.tokenize(text)]
    assert "".join(pieces) == text
    assert "\ufffd" not in "".join(pieces)
    assert qwen2._piece(qwen2.tokenizer.convert_tokens_to_ids("<|im_start|>")) == b""  # control: nothing


ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
                 "required": ["answer", "sure"], "additionalProperties": False}


@pytest.mark.parametrize("model", ["qwen2", "qwen3"])
def test_a_json_schema_holds_even_a_model_that_would_write_something_else(model, request):
    """The tiny models answer "Hello world" / think "Reason": the grammar alone makes this JSON."""
    backend = request.getfixturevalue(model)
    reply = collect(backend.chat(HI, GREEDY.replace(response_format=ANSWER_SCHEMA, max_tokens=60)))
    assert reply.finish_reason == "stop" and reply.reasoning == ""  # ended by the grammar, no <think>
    data = json.loads(reply.text)
    assert set(data) == {"answer", "sure"} and data["answer"] in ("yes", "no") and isinstance(data["sure"], bool)


def test_json_format_gives_an_object_from_the_first_character(qwen2):
    reply = collect(qwen2.chat(HI, GREEDY.replace(response_format="json", max_tokens=12)))
    assert reply.text.startswith('{"') and "Hello" not in reply.text


def test_a_forced_tool_call_grammar_gives_a_call_that_parses(qwen2):
    from qwencli.server.tools.hermes import forced_grammar as forced_call_grammar
    from qwencli.server.tools.hermes import parse_call

    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"unit": {"enum": ["c", "f"]}}, "required": ["unit"]}}}]
    reply = collect(qwen2.chat(HI, GREEDY.replace(grammar=forced_call_grammar(tools, several=False), max_tokens=40),
                               tools=tools))
    body = reply.text.strip().removeprefix("<tool_call>").removesuffix("</tool_call>")
    call = parse_call(body)
    assert call.name == "get_weather" and json.loads(call.arguments)["unit"] in ("c", "f")


def test_a_schema_that_cannot_be_compiled_is_a_usage_error_and_the_model_carries_on(qwen2):
    with pytest.raises(UsageError, match="grammar") as caught:
        collect(qwen2.chat(HI, GREEDY.replace(response_format={"type": "object", "properties": {"a": {"$ref": "#/nope"}}})))
    assert caught.value.param == "response_format"
    assert collect(qwen2.chat(HI, GREEDY)).text == "Hello world"


def test_without_xgrammar_constraints_say_what_to_install(tiny_qwen2_hf, monkeypatch):
    import sys

    from qwencli.backends.torch_grammar import Grammars

    monkeypatch.setitem(sys.modules, "xgrammar", None)  # import fails, as when it is not installed
    grammars = Grammars(tokenizer=None, vocab_size=10, end_tokens=[1])
    with pytest.raises(BackendUnavailable, match="needs xgrammar") as caught:
        grammars.constraint(GREEDY.replace(response_format="json"))
    assert "qwencli[torch]" in caught.value.hint
    assert grammars.constraint(GREEDY) is None  # nothing asked: nothing needed


def test_same_messages_render_the_same_prompt_through_both_backends(qwen3, tiny_qwen3_gguf):
    from qwencli.backends.llamacpp import LlamaCppBackend

    llama = LlamaCppBackend(tiny_qwen3_gguf, LoadOptions(context_length=1024))
    try:
        chat = [Message("system", "Be brief."), Message("user", "hi"), Message("assistant", "Hello"),
                Message("user", "and now? é世")]
        for think in (None, False, True):
            options = GREEDY.replace(think=think)
            ours = qwen3.render(chat, options)
            assert ours == llama.render(chat, options)
            kwargs = {} if think is None else {"enable_thinking": think}
            reference = qwen3.tokenizer.apply_chat_template([m.to_template() for m in chat], tokenize=False,
                                                            add_generation_prompt=True, **kwargs)
            assert ours == reference
            assert qwen3.tokenize(ours) == llama._engine.call(llama._tokenize, ours)
        assert collect(qwen3.chat(chat, GREEDY)).text == collect(llama.chat(chat, GREEDY)).text == "Answer"
    finally:
        llama.close()


# -- safety and kernels: checked before anything loads ------------------------------------------

def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def pickled(src, dst):
    """The tiny model with its weights as a pickle (pytorch_model.bin) instead of safetensors."""
    from safetensors.torch import load_file

    folder = _copy(src, dst)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def with_remote_code(src, dst):
    """The tiny model behind classes of its own (auto_map), as repos with custom code ship them."""
    folder = _copy(src, dst)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="custom-qwen", architectures=["CustomForCausalLM"],
                  auto_map={"AutoConfig": "configuration_custom.CustomConfig",
                            "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_custom.py").write_text(
        "from transformers import Qwen2Config\n\n\nclass CustomConfig(Qwen2Config):\n    model_type = 'custom-qwen'\n")
    (folder / "modeling_custom.py").write_text(
        "from transformers import Qwen2ForCausalLM\n\nfrom .configuration_custom import CustomConfig\n\n\n"
        "class CustomForCausalLM(Qwen2ForCausalLM):\n    config_class = CustomConfig\n    ran_repo_code = True\n")
    return folder


@pytest.mark.parametrize("make,refusal,flag,allow", [
    (pickled, InvalidModelFile, "--allow-pickle", {"allow_pickle": True}),
    (with_remote_code, UnsupportedModel, "--trust-remote-code", {"trust_remote_code": True}),
], ids=["pickle weights", "repo code"])
def test_unsafe_folders_are_refused_unless_the_user_allows_them(tiny_qwen2_hf, tmp_path, make, refusal, flag, allow):
    folder = make(tiny_qwen2_hf, tmp_path / "m")
    with pytest.raises(refusal) as caught:
        TorchBackend(folder, LoadOptions(device="cpu"))
    assert flag in caught.value.hint
    backend = TorchBackend(folder, LoadOptions(device="cpu", **allow))
    try:
        if make is with_remote_code:
            assert getattr(backend.model, "ran_repo_code", False)  # the folder's class, not transformers' own
        assert collect(backend.chat(HI, GREEDY)).text == "Hello world"
    finally:
        backend.close()


@pytest.mark.parametrize("method,package", [("awq", "gptqmodel"), ("gptq", "optimum")])
def test_quantized_repo_without_kernels_names_the_package(tiny_qwen2_hf, tmp_path, monkeypatch, method, package):
    from qwencli.formats import hf_folder

    folder = _copy(tiny_qwen2_hf, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": method, "bits": 4}
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(hf_folder, "find_spec", lambda name: None)
    with pytest.raises(BackendUnavailable) as caught:
        check_folder(folder)
    assert package in caught.value.message and "pip install" in caught.value.hint


def test_missing_torch_says_how_to_install_it(monkeypatch, tiny_qwen2_hf):
    from qwencli import hardware
    from qwencli.backends import load_backend
    from qwencli.resolved import ResolvedModel

    monkeypatch.setattr(hardware, "find_spec", lambda name: None if name in ("torch", "transformers") else object())
    with pytest.raises(BackendUnavailable) as caught:
        load_backend(ResolvedModel(name="m", format="safetensors", path=tiny_qwen2_hf))
    assert "pip install 'qwencli[torch]'" in caught.value.hint


def test_bad_device_is_a_usage_error(tiny_qwen2_hf):
    with pytest.raises(UsageError, match="--device"):
        TorchBackend(tiny_qwen2_hf, LoadOptions(device="tpu"))
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="no CUDA"):
            TorchBackend(tiny_qwen2_hf, LoadOptions(device="cuda"))


# -- CUDA only ---------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@cuda
def test_cuda_loads_in_bf16_or_fp16_and_answers(tiny_qwen2_hf):
    backend = TorchBackend(tiny_qwen2_hf, LoadOptions(device="cuda"))
    try:
        expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        assert backend.dtype == expected and next(backend.model.parameters()).is_cuda
        assert collect(backend.chat(HI, GREEDY)).text == "Hello world"
        stream = backend.complete("Loop", GREEDY.replace(max_tokens=100_000))
        next(stream)
        stream.close()
        assert collect(backend.chat(HI, GREEDY)).text == "Hello world"
    finally:
        backend.close()


@pytest.mark.cuda
@cuda
def test_cuda_probe_sees_the_gpu_and_auto_picks_torch_for_a_small_model():
    from qwencli.hardware import probe_hardware
    from qwencli.models.backend_route import ModelFacts, choose

    hw = probe_hardware()
    assert hw.cuda_available and hw.free_gpu_bytes > 0
    facts = ModelFacts("small", has_gguf=True, has_safetensors=True, torch_bytes=100_000_000)
    assert choose("auto", facts, hw).backend == "torch"
