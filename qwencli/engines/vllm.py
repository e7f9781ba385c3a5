"""vLLM's command line for a sizing (`vllm serve`, docs.vllm.ai/en/latest/cli/serve.html).

The order follows Qwen's own recipe for Qwen3.6 (docs.vllm.ai/projects/recipes, "Qwen3.5 & Qwen3.6"):
`vllm serve Qwen/Qwen3.6-35B-A3B --tensor-parallel-size 8 --max-model-len 262144 --reasoning-parser qwen3`,
then the tool flags of the model card's tool-use command (`--enable-auto-tool-choice --tool-call-parser
qwen3_coder`; `hermes` for the JSON dialect, qwen.readthedocs.io "Function calling"), then MTP
(`--speculative-config '{"method": "mtp", "num_speculative_tokens": 2}'`), then our own sizing.

Many nodes, vLLM's two documented paths (docs.vllm.ai/en/latest/serving/parallelism_scaling.html and
data_parallel_deployment.html): pipeline stages over a Ray cluster (`ray start --head` here, `ray start
--address=HEAD:6379` on the others, `--distributed-executor-backend ray`), or data parallel with one API
node and `--headless` ranks (`--data-parallel-size`, `--data-parallel-size-local`,
`--data-parallel-start-rank`, `--data-parallel-address`, `--data-parallel-rpc-port`).
"""

from __future__ import annotations

import json

from .facts import ModelFacts
from .plan import Machine, Sizing

PROGRAM = ("vllm", "serve")
RAY_PORT = 6379


def model_flags(facts: ModelFacts, sizing: Sizing) -> list[str]:
    """The flags every node runs with: what the model is and how it is split."""
    argv = ["--tensor-parallel-size", str(sizing.tensor_parallel)]
    if sizing.pipeline_parallel > 1:
        argv += ["--pipeline-parallel-size", str(sizing.pipeline_parallel)]
    if sizing.max_model_len:
        argv += ["--max-model-len", str(sizing.max_model_len)]
    if sizing.reasoning_parser:
        argv += ["--reasoning-parser", sizing.reasoning_parser]
    if sizing.tool_call_parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", sizing.tool_call_parser]
    if sizing.mtp_tokens:
        argv += ["--speculative-config", json.dumps({"method": "mtp", "num_speculative_tokens": sizing.mtp_tokens})]
    if sizing.expert_parallel:
        argv.append("--enable-expert-parallel")
    if sizing.quantization:
        argv += ["--quantization", sizing.quantization]
    argv += ["--gpu-memory-utilization", f"{sizing.gpu_memory_utilization:g}"]
    return argv


def render(
    facts: ModelFacts, sizing: Sizing, machine: Machine, *, host: str, port: int, rpc_port: int, program=PROGRAM
) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], tuple[tuple[str, ...], ...]]:
    """(this node's argv, commands to run here first, each other node's command)."""
    flags = model_flags(facts, sizing)
    head = machine.head_address or "HEAD_ADDRESS"
    before: list[tuple[str, ...]] = []
    others: list[tuple[str, ...]] = []
    dp_flags: list[str] = []
    if sizing.data_parallel > 1:
        dp_flags = ["--data-parallel-size", str(sizing.data_parallel)]
        if machine.nodes > 1:
            local = sizing.data_parallel_local
            shared = ["--data-parallel-size-local", str(local), "--data-parallel-address", head,
                      "--data-parallel-rpc-port", str(rpc_port)]  # fmt: skip
            dp_flags += shared
            for node in range(1, machine.nodes):
                others.append(
                    (*program, facts.repo, *flags, "--headless", "--data-parallel-size", str(sizing.data_parallel),
                     *shared, "--data-parallel-start-rank", str(node * local))
                )  # fmt: skip
    elif machine.nodes > 1:
        flags += ["--distributed-executor-backend", "ray"]
        before.append(("ray", "start", "--head", f"--port={RAY_PORT}"))
        others += [("ray", "start", f"--address={head}:{RAY_PORT}")] * (machine.nodes - 1)
    # Both names answer (vLLM's --served-model-name takes several): ours, and the repo a client may send.
    names = [facts.name] + ([facts.repo] if facts.repo != facts.name and not facts.repo.startswith("/") else [])
    argv = (*program, facts.repo, *flags, *dp_flags, "--served-model-name", *names, "--host", host,
            "--port", str(port))  # fmt: skip
    return argv, tuple(before), tuple(others)
