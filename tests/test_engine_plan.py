"""The engine plans, pure: a table of models × machines → the exact command line, and the refusals.

Machines are described, not probed. The catalog gives the models' facts (the store is empty here:
`isolated_home`), and `facts.KNOWN_SHAPES` their head counts.
"""

from __future__ import annotations

import json
import shlex

import pytest
from typer.testing import CliRunner

from qwencli.cli import app
from qwencli.engines.facts import facts_for
from qwencli.engines.plan import Machine, Overrides, make_plan
from qwencli.engines.run import dry_run_text
from qwencli.errors import UsageError
from qwencli.models.catalog import load as load_catalog

GIB = 1 << 30
#: Qwen's documented command for Qwen3.6-35B-A3B on 8 GPUs (docs.vllm.ai/projects/recipes, Qwen3.5 & Qwen3.6),
#: with the tool-use flags of its model card.
QWEN36_DOC = ("vllm serve Qwen/Qwen3.6-35B-A3B --tensor-parallel-size 8 --max-model-len 262144 --reasoning-parser qwen3"
              " --enable-auto-tool-choice --tool-call-parser qwen3_coder")
OURS = " --gpu-memory-utilization 0.9 --served-model-name {name} {repo} --host 127.0.0.1 --port 8000"


def ours(name: str) -> str:
    """Our sizing after the documented flags: both names answer (ours and the repo's)."""
    repo = next(e.repo for e in load_catalog().rows(name) if e.format == "safetensors")
    return OURS.format(name=name, repo=repo)


CASES = [
    # MoE, XML dialect, thinking, 8 GPUs: Qwen's own command plus our sizing.
    ("qwen3.6-35b-a3b", "vllm", Machine(8, 80 * GIB), Overrides(), QWEN36_DOC + ours("qwen3.6-35b-a3b")),
    # Dense, Hermes, thinking switch, 1 GPU of 24 GiB: 16 GB of weights leave room for 30K tokens, not 32K.
    ("qwen3-8b", "vllm", Machine(1, 24 * GIB), Overrides(),
     "vllm serve Qwen/Qwen3-8B --tensor-parallel-size 1 --max-model-len 30720 --reasoning-parser qwen3"
     " --enable-auto-tool-choice --tool-call-parser hermes" + ours("qwen3-8b")),
    # MoE instruct (never thinks): no reasoning parser; 2 GPUs.
    ("qwen3-30b-a3b-instruct-2507", "vllm", Machine(2, 80 * GIB), Overrides(),
     "vllm serve Qwen/Qwen3-30B-A3B-Instruct-2507 --tensor-parallel-size 2 --max-model-len 262144"
     " --enable-auto-tool-choice --tool-call-parser hermes" + ours("qwen3-30b-a3b-instruct-2507")),
    # Dense with 14 query heads on 8 GPUs: the most GPUs that divide them is 2.
    ("qwen2.5-0.5b", "vllm", Machine(8, 24 * GIB), Overrides(),
     "vllm serve Qwen/Qwen2.5-0.5B-Instruct --tensor-parallel-size 2 --max-model-len 32768"
     " --enable-auto-tool-choice --tool-call-parser hermes" + ours("qwen2.5-0.5b")),
    # 4 GPUs of 24 GiB hold the 61 GB of weights but not the KV cache of 262144 tokens: the context is cut.
    ("qwen3-coder-30b-a3b", "vllm", Machine(4, 24 * GIB), Overrides(),
     "vllm serve Qwen/Qwen3-Coder-30B-A3B-Instruct --tensor-parallel-size 4 --max-model-len 235520"
     " --enable-auto-tool-choice --tool-call-parser qwen3_coder" + ours("qwen3-coder-30b-a3b")),
    # MTP speculative decoding, as Qwen's recipe writes it.
    ("qwen3.6-35b-a3b", "vllm", Machine(8, 80 * GIB), Overrides(mtp_tokens=2),
     QWEN36_DOC + ' --speculative-config \'{"method": "mtp", "num_speculative_tokens": 2}\''
     + ours("qwen3.6-35b-a3b")),
    # Two nodes: pipeline stages over Ray.
    ("qwen3-235b-a22b", "vllm", Machine(8, 80 * GIB, nodes=2, head_address="10.0.0.1"), Overrides(),
     "vllm serve Qwen/Qwen3-235B-A22B --tensor-parallel-size 8 --pipeline-parallel-size 2 --max-model-len 32768"
     " --reasoning-parser qwen3 --enable-auto-tool-choice --tool-call-parser hermes --gpu-memory-utilization 0.9"
     " --distributed-executor-backend ray --served-model-name qwen3-235b-a22b Qwen/Qwen3-235B-A22B"
     " --host 127.0.0.1 --port 8000"),
    # SGLang, XML dialect, instruct.
    ("qwen3-coder-30b-a3b", "sglang", Machine(2, 80 * GIB), Overrides(),
     "python -m sglang.launch_server --model-path Qwen/Qwen3-Coder-30B-A3B-Instruct --tp 2 --context-length 262144"
     " --tool-call-parser qwen3_coder --mem-fraction-static 0.9 --served-model-name qwen3-coder-30b-a3b"
     " --host 127.0.0.1 --port 8000"),
    # SGLang, Hermes dialect is its `qwen25` parser.
    ("qwen3-8b", "sglang", Machine(1, 80 * GIB), Overrides(),
     "python -m sglang.launch_server --model-path Qwen/Qwen3-8B --tp 1 --context-length 32768 --reasoning-parser qwen3"
     " --tool-call-parser qwen25 --mem-fraction-static 0.9 --served-model-name qwen3-8b --host 127.0.0.1 --port 8000"),
]


@pytest.mark.parametrize(("model", "engine", "machine", "overrides", "expected"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2].gpus}x{c[2].nodes}" + ("-mtp" if c[3].mtp_tokens else "")
                              for c in CASES])
def test_command_line(model, engine, machine, overrides, expected):
    plan = make_plan(engine, facts_for(model), machine, overrides)
    assert shlex.join(plan.argv) == expected
    assert plan.reasons  # every size says why


def test_data_parallel_across_nodes_is_vllms_headless_mode():
    machine = Machine(8, 80 * GIB, nodes=2, head_address="10.0.0.1")
    plan = make_plan("vllm", facts_for("qwen3.6-35b-a3b"), machine,
                     Overrides(tensor_parallel=4, data_parallel=4, expert_parallel=True))
    argv = shlex.join(plan.argv)
    assert "--tensor-parallel-size 4 " in argv and "--enable-expert-parallel" in argv
    assert ("--data-parallel-size 4 --data-parallel-size-local 2 --data-parallel-address 10.0.0.1"
            " --data-parallel-rpc-port 13345") in argv
    assert "--pipeline-parallel-size" not in argv and "ray" not in argv
    [other] = plan.other_nodes
    other_line = shlex.join(other)
    assert other_line.startswith("vllm serve Qwen/Qwen3.6-35B-A3B --tensor-parallel-size 4")
    assert other_line.endswith("--headless --data-parallel-size 4 --data-parallel-size-local 2 --data-parallel-address"
                               " 10.0.0.1 --data-parallel-rpc-port 13345 --data-parallel-start-rank 2")
    assert "--port" not in other  # a headless rank serves no API


def test_ray_multi_node_prints_the_cluster_commands():
    plan = make_plan("vllm", facts_for("qwen3-235b-a22b"), Machine(8, 80 * GIB, nodes=3, head_address="h"))
    assert plan.before == (("ray", "start", "--head", "--port=6379"),)
    assert plan.other_nodes == (("ray", "start", "--address=h:6379"),) * 2
    text = dry_run_text(plan)
    assert text.splitlines()[0] == "ray start --head --port=6379"
    assert text.count("# node ") == 2


def test_sglang_nodes_run_the_same_command_with_their_rank():
    plan = make_plan("sglang", facts_for("qwen3-235b-a22b"), Machine(8, 80 * GIB, nodes=2, head_address="h"))
    assert plan.argv[plan.argv.index("--node-rank") + 1] == "0"
    [other] = plan.other_nodes
    assert other[other.index("--node-rank") + 1] == "1" and "--dist-init-addr" in other


@pytest.mark.parametrize(("model", "machine", "overrides", "message"), [
    ("qwen3-8b", Machine(0, 0), Overrides(), "need a CUDA GPU"),
    ("qwen3-235b-a22b", Machine(1, 24 * GIB), Overrides(), "do not fit"),
    ("qwen3-8b", Machine(1, 80 * GIB), Overrides(expert_parallel=True), "dense"),
    ("qwen3-8b", Machine(1, 80 * GIB), Overrides(mtp_tokens=2), "MTP"),
    ("qwen3-8b", Machine(2, 80 * GIB), Overrides(tensor_parallel=4), "needs 4 GPUs"),
    ("qwen3-8b", Machine(1, 80 * GIB), Overrides(gpu_memory_utilization=1.5), "fraction"),
])
def test_refusals_say_why(model, machine, overrides, message):
    with pytest.raises(UsageError, match=message):
        make_plan("vllm", facts_for(model), machine, overrides)


def test_overrides_win():
    plan = make_plan("vllm", facts_for("qwen3.6-35b-a3b"), Machine(8, 80 * GIB),
                     Overrides(tensor_parallel=2, max_model_len=65536, reasoning_parser="", tool_call_parser="",
                               gpu_memory_utilization=0.8, quantization="fp8"))
    assert shlex.join(plan.argv[2:]) == (
        "Qwen/Qwen3.6-35B-A3B --tensor-parallel-size 2 --max-model-len 65536 --quantization fp8"
        " --gpu-memory-utilization 0.8 --served-model-name qwen3.6-35b-a3b Qwen/Qwen3.6-35B-A3B"
        " --host 127.0.0.1 --port 8000"
    )


def test_a_model_in_the_store_is_read_from_it_offline(tmp_path, monkeypatch):
    """The snapshot's own config.json decides the shape, and the engine is told not to download."""
    snapshot = tmp_path / "hub" / "models--Qwen--Qwen3-8B" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (tmp_path / "hub" / "models--Qwen--Qwen3-8B" / "refs").mkdir()
    (tmp_path / "hub" / "models--Qwen--Qwen3-8B" / "refs" / "main").write_text("a" * 40)
    config = {"model_type": "qwen3", "num_attention_heads": 12, "num_key_value_heads": 4, "num_hidden_layers": 2,
              "head_dim": 64, "max_position_embeddings": 4096, "hidden_size": 768}
    (snapshot / "config.json").write_text(json.dumps(config))
    (snapshot / "model.safetensors").write_bytes(b"\0" * 1024)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    facts = facts_for("qwen3-8b")
    assert facts.in_store and facts.shape is not None and facts.shape.heads == 12
    plan = make_plan("vllm", facts, Machine(8, 80 * GIB), hub_cache=str(tmp_path / "hub"))
    assert plan.environment == {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    assert plan.argv[plan.argv.index("--tensor-parallel-size") + 1] == "4"  # 12 heads: 8 does not divide them
    assert plan.argv[plan.argv.index("--max-model-len") + 1] == "4096"


def test_dry_run_prints_qwens_command_plus_our_sizing():
    result = CliRunner().invoke(app, ["serve", "qwen3.6-35b-a3b", "--engine", "vllm", "--dry-run", "--gpus", "8",
                                      "--gpu-memory", "80GB", "--port", "8000"])
    assert result.exit_code == 0, result.output
    command = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert command == [QWEN36_DOC + ours("qwen3.6-35b-a3b")]
    assert "tensor parallel 8" in result.stderr and "max model len 262144" in result.stderr


def test_dry_run_without_a_gpu_says_how_to_describe_one(monkeypatch):
    from qwencli.hardware import Hardware

    monkeypatch.setattr("qwencli.hardware.probe_hardware", lambda **_: Hardware())  # no GPU, whatever this machine has
    result = CliRunner().invoke(app, ["serve", "qwen3-8b", "--engine", "vllm", "--dry-run"])
    assert result.exit_code == 2
    assert "--gpus N --gpu-memory 80GB" in result.stderr


def test_many_nodes_for_real_need_the_head_address():
    result = CliRunner().invoke(app, ["serve", "qwen3-8b", "--engine", "vllm", "--nodes", "2", "--gpus", "8",
                                      "--gpu-memory", "80GB"])  # fmt: skip
    assert result.exit_code == 2 and "--head-address" in result.stderr


@pytest.mark.parametrize(("text", "size"), [("80GB", 80 * GIB), ("80G", 80 * GIB), ("24GiB", 24 * GIB),
                                            ("81920MiB", 80 * GIB), ("1.5T", 1536 * GIB)])
def test_gpu_memory_sizes(text, size):
    from qwencli.cli.engine_options import parse_size

    assert parse_size(text) == size


def test_gpu_memory_refuses_what_is_not_a_size():
    from qwencli.cli.engine_options import parse_size

    with pytest.raises(UsageError, match="like 80GB"):
        parse_size("lots")
