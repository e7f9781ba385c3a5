"""`qwen serve` as an evaluation server: prompt log-probabilities (`echo` + `logprobs`), token-id
prompts, several prompts a request, chat `logprobs`, and the tokenizer endpoints — on a real
uvicorn with the official `openai` client, on both llama.cpp engines (`--parallel 1` runs the
one-at-a-time backend, `--parallel 2` the batched one).

The log-probabilities are checked against an independent computation: llama-cpp-python's own
`Llama(logits_all=True)` over the same file and tokens, log-softmax in numpy.
"""

from __future__ import annotations

import math

import httpx
import numpy as np
import openai
import pytest

from qwencli.backends.base import LoadOptions
from qwencli.server.app import create_app
from qwencli.server.config import ServerConfig
from qwencli.server.static_source import StaticSource
from tests import mc_sets
from tests.models import SMOLLM2, require
from tests.serving import RunningServer, wait_until

pytestmark = pytest.mark.slow

CONTEXT = 512
TEXT = "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is"
#: Quantized weights through two different batch layouts: the same numbers to this much.
TOLERANCE = 2e-3


@pytest.fixture(scope="module", params=[1, 2], ids=["plain", "batched"])
def server(request):
    config = ServerConfig(
        startup_models=("smollm2",), parallel=request.param, keep_alive=None, load=LoadOptions(context_length=CONTEXT)
    )
    app = create_app(config, StaticSource({"smollm2": require(SMOLLM2)}))
    with RunningServer(app) as running:
        assert wait_until(lambda: httpx.get(running.base + "/health").status_code == 200, timeout=60)
        yield running


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def reference():
    """Token ids → each token's log-probability given the ones before, by llama-cpp-python."""
    from llama_cpp import Llama

    llm = Llama(str(require(SMOLLM2)), n_ctx=CONTEXT, logits_all=True, verbose=False)

    def logprobs(tokens: list[int]) -> np.ndarray:
        llm.reset()
        llm.eval(tokens)
        scores = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
        high = scores.max(axis=1, keepdims=True)
        log_softmax = scores - high - np.log(np.exp(scores - high).sum(axis=1, keepdims=True))
        return np.array([log_softmax[i - 1, tokens[i]] for i in range(1, len(tokens))])

    def tokenize(text: str) -> list[int]:
        return llm.tokenize(text.encode(), add_bos=False, special=True)

    yield logprobs, tokenize
    llm.close()


def tokenize(server, text: str) -> list[int]:
    reply = httpx.post(server.base + "/tokenize", json={"content": text})
    assert reply.status_code == 200, reply.text
    return reply.json()["tokens"]


def test_echo_logprobs_equal_llama_cpp_python(client, server, reference):
    ref_logprobs, ref_tokenize = reference
    tokens = ref_tokenize(TEXT)
    assert tokenize(server, TEXT) == tokens
    out = client.completions.create(model="smollm2", prompt=TEXT, echo=True, logprobs=3, max_tokens=0)
    choice = out.choices[0]
    lp = choice.logprobs
    assert choice.text == TEXT
    assert len(lp.tokens) == len(tokens) and "".join(lp.tokens) == TEXT
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    expected = ref_logprobs(tokens)
    got = np.array(lp.token_logprobs[1:])
    assert np.max(np.abs(got - expected)) < TOLERANCE, (got, expected)
    assert lp.text_offset == [len("".join(lp.tokens[:i])) for i in range(len(tokens))]
    for value, top in zip(lp.token_logprobs[1:], lp.top_logprobs[1:]):
        assert len(top) == 3
        ranked = list(top.values())
        assert ranked == sorted(ranked, reverse=True)
        assert value <= ranked[0] + 1e-12  # nothing is more likely than the most likely
    assert out.usage.prompt_tokens == len(tokens) and out.usage.completion_tokens == 0


def test_lm_eval_payload_token_prompts_with_one_generated_token(client, server, reference):
    """What lm-eval's local-completions sends for loglikelihood: a batch of token-id prompts,
    echo, logprobs 1, max_tokens 1, temperature 0."""
    ref_logprobs, ref_tokenize = reference
    prompts = [ref_tokenize(TEXT), ref_tokenize("One, two, three, four,")]
    out = client.completions.create(
        model="smollm2", prompt=prompts, echo=True, logprobs=1, max_tokens=1, temperature=0, seed=1234
    )
    assert [c.index for c in out.choices] == [0, 1]
    for prompt, choice in zip(prompts, out.choices):
        lp = choice.logprobs
        assert len(lp.token_logprobs) == len(prompt) + 1  # the prompt, then the one generated token
        assert np.max(np.abs(np.array(lp.token_logprobs[1 : len(prompt)]) - ref_logprobs(prompt))) < TOLERANCE
        generated, top = lp.token_logprobs[-1], lp.top_logprobs[-1]
        assert generated == max(top.values())  # greedy: exactly the top entry (lm-eval's is_greedy test)
        assert choice.text.startswith("".join(lp.tokens[: len(prompt)]))
    assert out.usage.prompt_tokens == sum(len(p) for p in prompts) and out.usage.completion_tokens == 2


def test_choices_sharing_a_context_score_as_if_each_came_alone(client, reference):
    """The one-at-a-time engine reads only what follows the shared prefix of the last scored
    prompt (a question's context); the numbers must not change for it."""
    ref_logprobs, ref_tokenize = reference
    for answer in (" Madrid", " Paris", " Madrid", " Barcelona, of course"):
        tokens = ref_tokenize(TEXT + answer)
        out = client.completions.create(model="smollm2", prompt=tokens, echo=True, logprobs=2, max_tokens=0)
        got = np.array(out.choices[0].logprobs.token_logprobs[1:])
        assert np.max(np.abs(got - ref_logprobs(tokens))) < TOLERANCE, answer


def test_echo_plus_generation_equals_scoring_the_longer_prompt(client):
    """The generated token's log-probability comes from the same logits as a prompt token's would."""
    out = client.completions.create(model="smollm2", prompt=TEXT, echo=True, logprobs=0, max_tokens=1, temperature=0)
    lp = out.choices[0].logprobs
    longer = client.completions.create(model="smollm2", prompt=out.choices[0].text, echo=True, logprobs=0, max_tokens=0)
    assert longer.choices[0].logprobs.tokens == lp.tokens
    assert longer.choices[0].logprobs.token_logprobs[-1] == pytest.approx(lp.token_logprobs[-1], abs=TOLERANCE)


def test_chat_logprobs_in_openai_shape(client):
    out = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        logprobs=True,
        top_logprobs=2,
        max_tokens=6,
        temperature=0,
    )
    content = out.choices[0].logprobs.content
    assert len(content) == out.usage.completion_tokens
    text = b"".join(bytes(t.bytes) for t in content).decode()
    assert text == out.choices[0].message.content
    for token in content:
        assert len(token.top_logprobs) == 2
        assert token.logprob == token.top_logprobs[0].logprob  # greedy picks the top one
        assert token.top_logprobs[0].logprob >= token.top_logprobs[1].logprob
        assert math.isfinite(token.logprob) and token.logprob <= 0


def test_tokenize_detokenize_round_trip_and_special_tokens(server):
    base = server.base
    text = "<|im_start|>user\nHello, world!<|im_end|>"
    tokens = tokenize(server, text)
    end = tokenize(server, "<|im_end|>")
    assert len(end) == 1 and tokens[-1] == end[0]  # special-token text is its one id
    back = httpx.post(base + "/detokenize", json={"tokens": tokens}).json()
    assert back["content"] == text and back["prompt"] == text
    # vLLM's field names, which lm-eval's remote tokenizer sends.
    assert httpx.post(base + "/tokenize", json={"prompt": text, "add_special_tokens": False}).json()["tokens"] == tokens
    pieces = httpx.post(base + "/tokenize", json={"content": "Hello world", "with_pieces": True}).json()["tokens"]
    assert "".join(p["piece"] for p in pieces) == "Hello world" and all(isinstance(p["id"], int) for p in pieces)
    info = httpx.get(base + "/tokenizer_info").json()
    assert info["eos_token"] and len(tokenize(server, info["eos_token"])) == 1
    assert info["model_max_length"] == CONTEXT and "im_start" in (info["chat_template"] or "")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "hi", "logprobs": 21}, "logprobs"),
        ({"prompt": "hi", "logprobs": 1, "stream": True}, "logprobs"),
        ({"prompt": [[1, 2, 10**7]], "echo": True, "logprobs": 1, "max_tokens": 0}, "prompt"),
        ({"prompt": "word " * (CONTEXT + 50), "echo": True, "logprobs": 1, "max_tokens": 0}, None),
    ],
    ids=["too-many-alternatives", "stream", "token-outside-vocabulary", "past-the-context"],
)
def test_bad_scoring_requests_are_400_then_the_model_still_serves(client, body, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="smollm2", **body)
    assert caught.value.status_code == 400
    if param is not None:
        assert caught.value.body["param"] == param
    out = client.completions.create(model="smollm2", prompt=TEXT, echo=True, logprobs=1, max_tokens=1, temperature=0)
    assert len(out.choices[0].logprobs.token_logprobs) > 1


def test_chat_top_logprobs_past_the_limit_is_400(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=21, max_tokens=1
        )
    assert caught.value.body["param"] == "top_logprobs"


def test_qwen_eval_mc_on_the_server_equals_in_process(server, tmp_path):
    """`qwen eval mc --host` scores through /tokenize and echo + logprobs; in process, through the
    engine: the same questions, the same answers."""
    import json

    from tests.processes import run_qwen

    rows = [
        {"question": "Question: What is the capital of France?\nAnswer:", "choices": ["Rome", "Paris", "Oslo"],
         "answer": 1},
        {"question": "Question: What is 2 + 2?\nAnswer:", "choices": ["5", "4", "22"], "answer": 1},
        {"query": "The opposite of hot is", "choices": {"text": ["cold", "warm"], "label": ["A", "B"]},
         "answerKey": "A"},
    ]
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    remote = run_qwen("eval", "mc", "smollm2", data, "--style", "lm-eval", "--json", "--host", server.base)
    assert remote.returncode == 0, remote.stderr.decode()
    local = run_qwen("eval", "mc", require(SMOLLM2), data, "--style", "lm-eval", "--json", "--ctx", str(CONTEXT))
    assert local.returncode == 0, local.stderr.decode()
    theirs, ours = json.loads(remote.stdout), json.loads(local.stdout)
    assert theirs["questions"] == ours["questions"] == 3
    for a, b in zip(theirs["answers"], ours["answers"]):
        assert a["logprobs"] == pytest.approx(b["logprobs"], abs=TOLERANCE)
        assert (a["predicted"], a["predicted_norm"]) == (b["predicted"], b["predicted_norm"])
    assert (theirs["acc"], theirs["acc_norm"]) == (ours["acc"], ours["acc_norm"])


@pytest.mark.parametrize(
    ("style", "task", "write", "limit"),
    [
        # Two questions: each letter of a 5-shot MMLU question is a long prompt scored over HTTP.
        ("opencompass", "mmlu", lambda root: mc_sets.write_mmlu(root), "2"),
        ("opencompass", "winogrande", lambda root: mc_sets.write_winogrande(root), "3"),
        ("llama.cpp", "hellaswag", lambda root: mc_sets.write_llama_hellaswag(root / "hellaswag.txt"), "3"),
        ("llama.cpp", "winogrande", lambda root: mc_sets.write_llama_winogrande(root / "winogrande.csv"), "3"),
    ],
)
def test_the_preset_styles_on_the_server_equal_in_process(server, tmp_path, style, task, write, limit):
    """`--style opencompass` (PPL and log-likelihood presets) and `--style llama.cpp` (token-mean
    scores) need the same two things of a server as lm-eval does (/tokenize, echo + logprobs):
    through `qwen serve` every choice scores as in process, and the accuracy is the same."""
    import json

    from tests.processes import run_qwen

    data = write(tmp_path)
    args = (data, "--style", style, "--task", task, "--json", "--limit", limit)
    remote = run_qwen("eval", "mc", "smollm2", *args, "--host", server.base, "--journal", tmp_path / "r.jsonl")
    assert remote.returncode == 0, remote.stderr.decode()
    local = run_qwen("eval", "mc", require(SMOLLM2), *args, "--ctx", str(CONTEXT), "--journal", tmp_path / "l.jsonl")
    assert local.returncode == 0, local.stderr.decode()
    theirs, ours = json.loads(remote.stdout), json.loads(local.stdout)
    assert theirs["questions"] == ours["questions"] > 0
    for a, b in zip(theirs["answers"], ours["answers"]):
        assert a["scores"] == pytest.approx(b["scores"], abs=TOLERANCE)
        assert a["predicted"] == b["predicted"]
    assert theirs["acc"] == ours["acc"]
