"""SGLang's command line for a sizing (`python -m sglang.launch_server`, docs.sglang.io
"Server arguments"; Qwen's page: qwen.readthedocs.io/en/stable/deployment/sglang.html).

`--model-path`, `--tp`, `--pp-size`, `--dp`, `--ep-size`, `--context-length`, `--mem-fraction-static`,
`--reasoning-parser qwen3` (SGLang's "Reasoning Parser" page: qwen3 for Qwen3, 2507 and Thinking models),
`--tool-call-parser qwen25` for the Hermes JSON dialect of Qwen2.5/Qwen3 and `qwen3_coder` for the XML one
(SGLang's "Tool Parser" page; the Qwen3.6 cookbook: "tool calling support with qwen3_coder parser").
SGLang turns tool calls on with the parser alone (no `--enable-auto-tool-choice`). MTP is its NEXTN
speculative algorithm. Many nodes: the same command on each with `--nnodes`, `--node-rank` and
`--dist-init-addr HEAD:PORT`.
"""

from __future__ import annotations

from .facts import ModelFacts
from .plan import Machine, Sizing

PROGRAM = ("python", "-m", "sglang.launch_server")
TOOL_PARSERS = {"hermes": "qwen25", "qwen3_coder": "qwen3_coder"}


def render(
    facts: ModelFacts, sizing: Sizing, machine: Machine, *, host: str, port: int, rpc_port: int, program=PROGRAM
) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], tuple[tuple[str, ...], ...]]:
    argv = ["--model-path", facts.repo, "--tp", str(sizing.tensor_parallel)]
    if sizing.pipeline_parallel > 1:
        argv += ["--pp-size", str(sizing.pipeline_parallel)]
    if sizing.data_parallel > 1:
        argv += ["--dp", str(sizing.data_parallel)]
    if sizing.expert_parallel:
        argv += ["--ep-size", str(sizing.tensor_parallel * sizing.data_parallel)]
    if sizing.max_model_len:
        argv += ["--context-length", str(sizing.max_model_len)]
    if sizing.reasoning_parser:
        argv += ["--reasoning-parser", sizing.reasoning_parser]
    if sizing.tool_call_parser:
        argv += ["--tool-call-parser", TOOL_PARSERS.get(sizing.tool_call_parser, sizing.tool_call_parser)]
    if sizing.mtp_tokens:
        steps = sizing.mtp_tokens
        argv += ["--speculative-algorithm", "NEXTN", "--speculative-num-steps", str(steps),
                 "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", str(steps + 1)]  # fmt: skip
    if sizing.quantization:
        argv += ["--quantization", sizing.quantization]
    argv += ["--mem-fraction-static", f"{sizing.gpu_memory_utilization:g}"]
    others: list[tuple[str, ...]] = []
    if machine.nodes > 1:
        address = f"{machine.head_address or 'HEAD_ADDRESS'}:{rpc_port}"
        nodes = ["--nnodes", str(machine.nodes), "--dist-init-addr", address]
        others = [(*program, *argv, *nodes, "--node-rank", str(n)) for n in range(1, machine.nodes)]
        argv += [*nodes, "--node-rank", "0"]
    argv += ["--served-model-name", facts.name, "--host", host, "--port", str(port)]
    return (*program, *argv), (), tuple(others)
