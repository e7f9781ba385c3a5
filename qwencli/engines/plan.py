"""Model facts + machine facts + the user's overrides → an `EnginePlan`: the command line, its
environment, the port, and why each size was chosen. Pure: nothing is probed or started here, so a
table of models and machines tests it, and `--dry-run` prints it.

Sizing, each overridable:
- tensor parallel: the most GPUs of one node that divide the query heads and fit the KV heads (vLLM
  requires heads % tp == 0, and KV heads either split evenly or are replicated: kv % tp == 0 or
  tp % kv == 0), as Qwen's own recipes use every GPU of the node (`--tensor-parallel-size 8`);
- across nodes: pipeline parallel, one stage a node, over a Ray cluster (vLLM's multi-node path) —
  or, with `--data-parallel`, vLLM's headless data-parallel mode (one API node, the others `--headless`);
- context: the trained length, cut to what the KV cache can hold in the memory left after the weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import UsageError
from .facts import ModelFacts

ENGINES = ("vllm", "sglang")
#: vLLM's own default for --gpu-memory-utilization; the share of each GPU we size against.
DEFAULT_GPU_UTILIZATION = 0.9
#: Per GPU, what vLLM keeps besides weights and KV cache (activations, CUDA graphs): a planning margin.
RESERVED_PER_GPU = 2 << 30
#: The least context worth serving; below it the plan says the model needs more GPUs instead.
MIN_CONTEXT = 4096
#: The port vLLM's data-parallel coordinator listens on in its docs' examples.
DEFAULT_RPC_PORT = 13345


@dataclass(frozen=True)
class Machine:
    """The GPUs of one node (all nodes alike), as probed or as described on the command line."""

    gpus: int
    gpu_bytes: int  # memory of each GPU
    nodes: int = 1
    head_address: str | None = None  # this node's address as the other nodes reach it


@dataclass(frozen=True)
class Overrides:
    tensor_parallel: int | None = None
    pipeline_parallel: int | None = None
    data_parallel: int | None = None
    expert_parallel: bool = False
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    mtp_tokens: int = 0  # >0: MTP speculative decoding with this many draft tokens
    reasoning_parser: str | None = None  # "" turns it off
    tool_call_parser: str | None = None  # "" turns tool calls off
    quantization: str | None = None
    rpc_port: int = DEFAULT_RPC_PORT


@dataclass(frozen=True)
class Sizing:
    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int  # replicas in all
    data_parallel_local: int  # replicas on each node
    expert_parallel: bool
    max_model_len: int | None
    gpu_memory_utilization: float
    reasoning_parser: str | None
    tool_call_parser: str | None
    quantization: str | None
    mtp_tokens: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class EnginePlan:
    engine: str
    argv: tuple[str, ...]
    host: str
    port: int
    env: tuple[tuple[str, str], ...] = ()
    reasons: tuple[str, ...] = ()
    #: Commands for the other nodes, in order (a Ray worker join, or a headless vLLM), each as argv.
    other_nodes: tuple[tuple[str, ...], ...] = ()
    #: What to run on this node first (Ray's head), as argv.
    before: tuple[tuple[str, ...], ...] = field(default=())

    @property
    def environment(self) -> dict[str, str]:
        return dict(self.env)


def reasoning_parser(facts: ModelFacts) -> str | None:
    """`qwen3` for every model that can think (Qwen3, Qwen3.5+, QwQ, Thinking-2507); none for models that
    never do (2507 Instruct, Qwen2.5) — vLLM's and SGLang's docs name `qwen3` for all of them."""
    return None if facts.thinking in ("none", "never", "unknown") else "qwen3"


def size(facts: ModelFacts, machine: Machine, wanted: Overrides) -> Sizing:
    reasons: list[str] = []
    utilization = wanted.gpu_memory_utilization or DEFAULT_GPU_UTILIZATION
    if not 0 < utilization <= 1:
        raise UsageError(f"--gpu-memory-utilization takes a fraction in (0, 1], not {utilization}")
    if machine.gpus < 1:
        raise UsageError(
            "vLLM and SGLang need a CUDA GPU and none was found",
            "describe the target machine with --gpus N --gpu-memory 80GB to see the plan (--dry-run)",
        )
    nodes = max(1, machine.nodes)
    dp = wanted.data_parallel or 1
    tp = wanted.tensor_parallel or _tensor_parallel(facts, machine.gpus // dp if dp <= machine.gpus else 1, reasons)
    if wanted.tensor_parallel:
        reasons.append(f"tensor parallel {tp}: as asked")
    if wanted.pipeline_parallel:
        pp = wanted.pipeline_parallel
        reasons.append(f"pipeline parallel {pp}: as asked")
    elif nodes > 1 and dp == 1:
        pp = nodes
        reasons.append(f"pipeline parallel {pp}: one stage on each of {nodes} nodes (Ray cluster)")
    else:
        pp = 1
    if dp > 1:
        reasons.append(f"data parallel {dp}: as asked ({dp // nodes or 1} on each node)")
    _check_fits(tp, pp, dp, nodes, machine)
    expert = wanted.expert_parallel
    if expert and not facts.moe:
        raise UsageError(f"--expert-parallel is for mixture-of-experts models; {facts.name} is dense")
    if expert:
        reasons.append(f"expert parallel: the experts spread over tp×dp = {tp * dp} GPUs, as asked")
    max_len = _context(facts, machine, tp * pp, utilization, wanted.max_model_len, reasons)
    if wanted.mtp_tokens and not facts.mtp:
        raise UsageError(f"--mtp is for models trained with MTP heads (Qwen3.5 and later); {facts.name} has none")
    return Sizing(
        tensor_parallel=tp,
        pipeline_parallel=pp,
        data_parallel=dp,
        data_parallel_local=max(1, dp // nodes),
        expert_parallel=expert,
        max_model_len=max_len,
        gpu_memory_utilization=utilization,
        reasoning_parser=reasoning_parser(facts)
        if wanted.reasoning_parser is None
        else wanted.reasoning_parser or None,
        tool_call_parser=(
            {"hermes": "hermes", "xml": "qwen3_coder"}.get(facts.tools)
            if wanted.tool_call_parser is None
            else wanted.tool_call_parser or None
        ),
        quantization=wanted.quantization,
        mtp_tokens=wanted.mtp_tokens,
        reasons=tuple(reasons),
    )


def _tensor_parallel(facts: ModelFacts, gpus: int, reasons: list[str]) -> int:
    shape = facts.shape
    if shape is None:
        tp = 1 << (max(1, gpus).bit_length() - 1)  # head count unknown: a power of two always divides Qwen's
        reasons.append(f"tensor parallel {tp}: the GPUs of one node (head count unknown; vLLM checks it)")
        return tp
    for tp in range(max(1, gpus), 0, -1):
        if shape.heads % tp == 0 and (shape.kv_heads % tp == 0 or tp % shape.kv_heads == 0):
            why = "the GPUs of one node" if tp == gpus else f"the most of {gpus} GPUs that divide them"
            reasons.append(f"tensor parallel {tp}: {why} ({shape.heads} query / {shape.kv_heads} KV heads)")
            return tp
    return 1


def _check_fits(tp: int, pp: int, dp: int, nodes: int, machine: Machine) -> None:
    needed, have = tp * pp * dp, machine.gpus * nodes
    if needed > have:
        raise UsageError(
            f"tensor {tp} × pipeline {pp} × data {dp} parallel needs {needed} GPUs; {have} are described",
            "lower --tensor-parallel / --data-parallel, or add --nodes",
        )


def _context(
    facts: ModelFacts, machine: Machine, gpus: int, utilization: float, wanted: int | None, reasons: list[str]
) -> int | None:
    if wanted:
        reasons.append(f"max model len {wanted}: as asked")
        return wanted
    usable = int(machine.gpu_bytes * utilization) * gpus
    left = usable - facts.weight_bytes - RESERVED_PER_GPU * gpus
    if facts.weight_bytes and left <= 0:
        gib = 1 << 30
        raise UsageError(
            f"{facts.name}'s weights ({facts.weight_bytes / gib:.0f} GiB) do not fit in {gpus} GPU(s) of "
            f"{machine.gpu_bytes / gib:.0f} GiB at {utilization:.0%}",
            "use more GPUs (--nodes), a quantized build (fp8, awq), or a smaller model",
        )
    trained = facts.context or None
    if facts.shape is None or not facts.weight_bytes:
        if trained:
            reasons.append(f"max model len {trained}: the trained length (KV size unknown; vLLM checks it at start)")
        return trained
    shape = facts.shape
    # K and V, bf16, for each attention layer; KV heads replicated when there are fewer than TP ranks.
    per_token = 2 * 2 * shape.attention_layers * max(shape.kv_heads, gpus) * shape.head_dim
    fits = left // per_token
    if trained and fits >= trained:
        reasons.append(
            f"max model len {trained}: the trained length; the KV cache has room for {fits:,} tokens "
            f"in {left / (1 << 30):.0f} GiB after the weights"
        )
        return trained
    cut = fits // 1024 * 1024
    if cut < MIN_CONTEXT:
        raise UsageError(
            f"after {facts.name}'s weights the KV cache has room for only {fits} tokens",
            "use more GPUs (--nodes), a quantized build, or pass --max-model-len",
        )
    reasons.append(f"max model len {cut}: what the KV cache holds after the weights (trained {trained or '?'})")
    return cut


def with_port(plan: EnginePlan, port: int) -> EnginePlan:
    """The same plan on another port (the argv's `--port` value too)."""
    argv = list(plan.argv)
    argv[argv.index("--port") + 1] = str(port)
    return dataclasses.replace(plan, argv=tuple(argv), port=port)


def make_plan(
    engine: str,
    facts: ModelFacts,
    machine: Machine,
    wanted: Overrides = Overrides(),
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    hub_cache: str | None = None,
    program: tuple[str, ...] | None = None,
) -> EnginePlan:
    """The whole plan. `hub_cache`: our store, handed to the engine so it reads the same files."""
    from . import sglang, vllm

    if engine not in ENGINES:
        raise UsageError(f"--engine takes {' or '.join(ENGINES)}, not {engine!r}")
    sizing = size(facts, machine, wanted)
    renderer = vllm if engine == "vllm" else sglang
    argv, before, others = renderer.render(
        facts, sizing, machine, host=host, port=port, rpc_port=wanted.rpc_port, program=program or renderer.PROGRAM
    )
    env: list[tuple[str, str]] = []
    reasons = list(sizing.reasons)
    if hub_cache:
        env.append(("HF_HUB_CACHE", hub_cache))
    if facts.in_store:
        env.append(("HF_HUB_OFFLINE", "1"))  # the files are here: a missing one is an error, not a download
        reasons.append(f"model: {facts.repo} from the store ({hub_cache or 'the HF cache'}), offline")
    else:
        reasons.append(f"model: {facts.repo}, which {engine} downloads into the HF cache itself")
    unknown = facts.thinking == "unknown"
    if sizing.reasoning_parser is None and wanted.reasoning_parser is None:
        reasons.append(
            "no reasoning parser: not in the catalog (--reasoning-parser qwen3 if it thinks)"
            if unknown
            else "no reasoning parser: this model never thinks"
        )
    if sizing.tool_call_parser is None and wanted.tool_call_parser is None and facts.tools == "unknown":
        reasons.append("no tool-call parser: not in the catalog (--tool-call-parser hermes or qwen3_coder)")
    if facts.quantization and not sizing.quantization:
        reasons.append(f"quantization {facts.quantization}: read by {engine} from the repo's config")
    return EnginePlan(engine, tuple(argv), host, port, tuple(env), tuple(reasons), others, before)
