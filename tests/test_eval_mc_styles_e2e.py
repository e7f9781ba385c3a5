"""`qwen eval mc --style opencompass` and `--style llama.cpp` on the real SmolLM2 GGUF, over small
data sets the tests write in each anchor's own format (tests/mc_sets.py).

Each style's numbers are checked against an independent computation for a question or two:
the prompts written here from OpenCompass's config templates (`str.format`, as its
PromptTemplate fills them) or from perplexity.cpp's rules, tokenized and scored by
llama-cpp-python's own `Llama(logits_all=True)` with a log-softmax in numpy.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from qwencli.backends.base import LoadOptions
from qwencli.backends.llamacpp import LlamaCppBackend
from qwencli.evaluate import llamacpp_tasks, opencompass, opencompass_data
from qwencli.evaluate.scoring import Scorer
from tests import mc_sets
from tests.models import SMOLLM2, require
from tests.processes import run_qwen

pytestmark = pytest.mark.slow

CONTEXT = 2048
#: Log-probs of one engine in two batch layouts (the reference decodes each prompt whole).
TOLERANCE = 2e-3

# OpenCompass's templates, as its configs write them (mmlu_ppl_ac766d.py, hellaswag_10shot_ppl_59c85e.py).
MMLU_ICE = "{input}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer: {target}\n"
MMLU_PROMPT = "The following are multiple choice questions (with answers) about  {subject}.\n\n</E>" \
              "{input}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer: {label}"
HS_QO = "{ctx}\nA) {A}\nB) {B}\nC) {C}\nD) {D}\nWhat is the right option?"
HS_HINT = "Continue the following text without adding any additional information or formatting:"


@pytest.fixture(scope="module")
def scorer():
    backend = LlamaCppBackend(require(SMOLLM2), LoadOptions(context_length=CONTEXT))
    yield Scorer(backend, backend.tokenizer_info()["model_max_length"])
    backend.close()


@pytest.fixture(scope="module")
def reference():
    """text → (tokens as common_tokenize(…, add_special=true) cuts them, log p of each token after the first)."""
    from llama_cpp import Llama

    llm = Llama(str(require(SMOLLM2)), n_ctx=CONTEXT, n_batch=512, logits_all=True, verbose=False)

    def score(text: str) -> tuple[list[int], np.ndarray, np.ndarray]:
        tokens = llm.tokenize(text.encode(), add_bos=True, special=False)
        llm.reset()
        llm.eval(tokens)
        rows = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
        high = rows.max(axis=1, keepdims=True)
        log_softmax = rows - high - np.log(np.exp(rows - high).sum(axis=1, keepdims=True))
        picked = np.array([log_softmax[i - 1, tokens[i]] for i in range(1, len(tokens))])
        return tokens, picked, log_softmax

    yield score
    llm.close()


def qwen_json(*args):
    done = run_qwen("eval", "mc", require(SMOLLM2), *args, "--json", "--ctx", str(CONTEXT), timeout=600)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def letter_ppls(reference, prompt_without_letter: str) -> list[float]:
    """OpenCompass's get_ppl of the prompt ending in each letter, from one decode: the four
    prompts must differ in their last token only (checked)."""
    tokens, picked, log_softmax = reference(prompt_without_letter + "A")
    out = []
    for letter in "ABCD":
        full = reference(prompt_without_letter + letter)[0] if letter != "A" else tokens
        assert full[:-1] == tokens[:-1] and len(full) == len(tokens)
        total = picked[:-1].sum() + log_softmax[len(tokens) - 2, full[-1]]
        out.append(-total / len(tokens))
    return out


def test_opencompass_mmlu_through_the_cli(tmp_path, reference):
    root = mc_sets.write_mmlu(tmp_path / "mmlu")
    result = qwen_json(root, "--style", "opencompass", "--task", "mmlu")
    assert (result["style"], result["task"], result["score_kind"]) == ("opencompass", "mmlu", "ppl")
    assert result["questions"] == 7 and len(result["answers"]) == 7
    subjects = result["subjects"]
    assert sorted(subjects) == ["elementary_mathematics", "geography"]
    assert result["acc"] == pytest.approx(sum(subjects.values()) / 2)  # the mean over subjects, not questions
    for a in result["answers"]:
        assert len(a["scores"]) == 4 and a["predicted"] == a["scores"].index(min(a["scores"]))

    # The first question (elementary_mathematics, test row 1) from OpenCompass's own templates.
    dev = mc_sets._sum_rows([(1, 1), (2, 3), (4, 4), (5, 2), (3, 3)])
    ice = "\n".join(MMLU_ICE.format(input=r[0], A=r[1], B=r[2], C=r[3], D=r[4], target=r[5]) for r in dev) + "\n"
    q = mc_sets._sum_rows([(7, 8), (9, 9), (6, 7)])[0]
    prompt = MMLU_PROMPT.replace("</E>", ice).format(subject="elementary mathematics", input=q[0], A=q[1], B=q[2],
                                                     C=q[3], D=q[4], label="")
    first = result["answers"][0]
    assert first["subject"] == "elementary_mathematics"
    assert first["scores"] == pytest.approx(letter_ppls(reference, prompt), abs=TOLERANCE)


def test_opencompass_hellaswag_prompts_and_ppl(tmp_path, scorer, reference):
    loaded = opencompass_data.load("hellaswag", mc_sets.write_hellaswag(tmp_path / "hs", questions=2))
    assert len(loaded.questions) == 2 and len(loaded.shots[None]) == 10
    result = opencompass.run_choice4(scorer, "hellaswag", loaded.questions, loaded.shots)
    assert (result.style, result.task, result.questions) == ("opencompass", "hellaswag", 2)
    # The raw rows as lm-eval preprocesses them; OpenCompass keeps what follows "label: ".
    shots = [mc_sets.HELLASWAG[i % 4] for i in range(10)]
    ice = "\n".join(HS_QO.format(ctx=c, A=e[0], B=e[1], C=e[2], D=e[3]) + f"\n{'ABCD'[a]}\n"
                    for _, c, e, a in shots) + "\n"  # fmt: skip
    _, ctx, endings, _ = mc_sets.HELLASWAG[1]
    prompt = f"{HS_HINT}\n{ice}" + HS_QO.format(ctx=ctx, A=endings[0], B=endings[1], C=endings[2], D=endings[3]) + "\n"
    assert list(result.scored[0].scores) == pytest.approx(letter_ppls(reference, prompt), abs=TOLERANCE)


def test_opencompass_winogrande_loglikelihood(tmp_path, scorer, reference):
    loaded = opencompass_data.load("winogrande", mc_sets.write_winogrande(tmp_path / "wg", questions=2))
    result = opencompass.run_winogrande(scorer, loaded.questions, loaded.shots[None])
    assert (result.style, result.task, result.score_kind, result.questions) == ("opencompass", "winogrande",
                                                                                 "loglikelihood", 2)
    # Shots: train_xs rows 0, 2, 4, 6, 8, each its right sentence; the continuation is the text after "_".
    rows = (mc_sets.WINOGRANDE * 2)[:10]
    ice = "\n".join(s.replace("_", (a, b)[int(ans) - 1]) for s, a, b, ans in (rows[i] for i in (0, 2, 4, 6, 8))) + "\n"
    sentence, a, b, _ = mc_sets.WINOGRANDE[1]
    cont = sentence.split("_")[1]
    expected = []
    for option in (a, b):
        prompt = ice + sentence.replace("_", option)
        tokens, picked, _ = reference(prompt)
        n_context = len(reference(prompt.replace(cont, ""))[0])
        expected.append(picked[n_context - 1 :].sum())
    assert list(result.scored[0].scores) == pytest.approx(expected, abs=TOLERANCE)
    assert result.scored[0].predicted == int(expected[1] > expected[0])


def mean_from(picked: np.ndarray, start: int, stop: int) -> float:
    """Mean log-prob of tokens start..stop-1 (picked[i - 1] is token i's)."""
    return float(picked[start - 1 : stop - 1].mean())


def test_llama_cpp_hellaswag_token_mean_from_the_shared_prefix(tmp_path, scorer, reference):
    tasks = llamacpp_tasks.read_hellaswag(mc_sets.write_llama_hellaswag(tmp_path / "hs.txt"))
    assert len(tasks) == 4 and tasks[2].answers == {2}
    result = llamacpp_tasks.run(scorer, "hellaswag", tasks[:2])
    assert (result.style, result.task, result.score_kind) == ("llama.cpp", "hellaswag", "mean_logprob")
    task = tasks[0]
    seqs = [reference(task.context + " " + e) for e in task.endings]
    prefix = 0
    while all(s[0][prefix] == seqs[0][0][prefix] for s in seqs):
        prefix += 1
    expected = [mean_from(picked, prefix, len(tokens)) for tokens, picked, _ in seqs]
    assert list(result.scored[0].scores) == pytest.approx(expected, abs=TOLERANCE)
    lines = llamacpp_tasks.report(result)
    assert lines[0] == "task\tacc_norm\t95% confidence interval" and lines[1].startswith("2\t")


def test_llama_cpp_winogrande_partial_scoring_and_its_first_logits(tmp_path, scorer, reference):
    tasks = llamacpp_tasks.read_winogrande(mc_sets.write_llama_winogrande(tmp_path / "wg.csv"))
    assert len(tasks) == 6 and tasks[0].choices == ("trophy", "suitcase") and tasks[0].answer == 0
    result = llamacpp_tasks.run(scorer, "winogrande", tasks)
    assert (result.questions, len(result.scored[0].scores)) == (6, 2)
    checked = set()
    for task, scored in zip(tasks, result.scored):
        seqs = [reference(task.first + c + task.second) for c in task.choices]
        (t0, p0, _), (t1, p1, _) = seqs
        prefix = next(i for i in range(min(len(t0), len(t1))) if t0[i] != t1[i])
        skip = len(t0) - prefix > 3 and len(t1) - prefix > 3
        expected = []
        for i, (tokens, picked, _) in enumerate(seqs):
            base = len(reference(task.first + task.choices[i])[0]) if skip else prefix
            last = 1 if len(tokens) - base > 1 else 0
            values = list(picked[base - 1 : len(tokens) - 1 - last])
            if i == 1 and not skip:  # perplexity.cpp's FIXME: the row after all of choice 1
                values[0] = reference(task.first + task.choices[0] + task.second)[2][len(t0) - 1, tokens[prefix]]
            expected.append(sum(values) / len(values))
        assert list(scored.scores) == pytest.approx(expected, abs=TOLERANCE)
        checked.add(skip)
    assert checked == {True, False}, "both paths: past the filler only, and from the shared prefix"


def test_llama_cpp_multiple_choice_through_the_cli(tmp_path):
    data = mc_sets.write_llama_multiple_choice(tmp_path / "mc.bin", mc_sets.MC_TASKS)
    result = qwen_json(data, "--style", "llama.cpp", "--task", "multiple-choice")
    assert (result["style"], result["task"], result["questions"]) == ("llama.cpp", "multiple-choice", 3)
    assert [len(a["scores"]) for a in result["answers"]] == [3, 4, 2]
    assert all(math.isfinite(s) and s < 0 for a in result["answers"] for s in a["scores"])
    text = run_qwen("eval", "mc", require(SMOLLM2), data, "--style", "llama.cpp", "--task", "multiple-choice",
                    "--ctx", str(CONTEXT), timeout=600)  # fmt: skip
    out = text.stdout.decode()
    assert "(3 questions, --style llama.cpp --task multiple-choice)" in out
    assert f"Final result: {100 * result['acc']:.4f} +/- " in out and "Random chance: 33.3333 +/- " in out


def test_llama_cpp_winogrande_says_llama_perplexity_scores_one_task_less(tmp_path):
    """perplexity.cpp's winogrande reader never handles a file's last line (`-f` strips the final
    newline, then its loop stops at end of file first): we score every task and say so, with the
    --limit that sets the two side by side; with that --limit nothing is said."""
    data = mc_sets.write_llama_winogrande(tmp_path / "wg.csv")
    args = ("eval", "mc", require(SMOLLM2), data, "--style", "llama.cpp", "--task", "winogrande", "--ctx", str(CONTEXT))
    done = run_qwen(*args, "--journal", tmp_path / "a.jsonl", timeout=600)
    assert done.returncode == 0, done.stderr.decode()
    assert "all 6 tasks are scored; llama-perplexity --winogrande leaves out a file's last line and scores 5: " \
           "compare with --limit 5" in done.stderr.decode()  # fmt: skip
    assert "Final Winogrande score(6 tasks)" in done.stdout.decode()
    limited = run_qwen(*args, "--limit", "5", "--journal", tmp_path / "b.jsonl", timeout=600)
    assert limited.returncode == 0, limited.stderr.decode()
    assert "llama-perplexity" not in limited.stderr.decode()
    assert "Final Winogrande score(5 tasks)" in limited.stdout.decode()
