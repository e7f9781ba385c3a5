"""Request bodies of the OpenAI endpoints we serve, as strict pydantic models.

Strict and closed: a field we do not know is a 400 naming it (never silently ignored), a number
sent as a string is a 400, and every number has the bounds of `qwencli.sampling.LIMITS`.
A few fields are accepted only with the value that means "nothing special" (`n: 1`,
`logprobs: false`); other values are rejected in `jobs.py` with a message saying so.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..sampling import LIMITS

MAX_STOPS = 16
MAX_STOP_CHARS = 256
MAX_TOOLS = 128
MAX_MESSAGES = 4096
MAX_NAME = 256
#: A context larger than any model we know of; memory is checked against the machine on load.
MAX_NUM_CTX = 1 << 20
MIN_NUM_CTX = 256
#: Prompts in one completions request (lm-eval sends its batch size's worth).
MAX_PROMPTS = 256


def _bounds(name: str, kind: type[int] | type[float]) -> Any:
    """The `Field` holding `LIMITS[name]`, as numbers of `kind`."""
    low, high = LIMITS[name]
    return Field(ge=kind(low), le=kind(high))


Temperature = Annotated[float | None, _bounds("temperature", float)]
TopP = Annotated[float | None, _bounds("top_p", float)]
TopK = Annotated[int | None, _bounds("top_k", int)]
MinP = Annotated[float | None, _bounds("min_p", float)]
RepeatPenalty = Annotated[float | None, _bounds("repeat_penalty", float)]
PresencePenalty = Annotated[float | None, _bounds("presence_penalty", float)]
FrequencyPenalty = Annotated[float | None, _bounds("frequency_penalty", float)]
MaxTokens = Annotated[int | None, _bounds("max_tokens", int)]
Seed = Annotated[int | None, _bounds("seed", int)]
NumCtx = Annotated[int | None, Field(ge=MIN_NUM_CTX, le=MAX_NUM_CTX)]
StopString = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
Stop = StopString | Annotated[list[StopString], Field(max_length=MAX_STOPS)] | None
ModelName = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(Strict):
    include_usage: bool | None = None
    # Padding against traffic analysis on OpenAI's links; nothing to pad on a local server.
    include_obfuscation: bool | None = None


# -- messages -------------------------------------------------------------------------------


class ContentPart(BaseModel):
    """A part of a message's content. Only text is supported; others are refused by name."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: str
    text: str | None = None


class FunctionCallIn(Strict):
    name: Annotated[str, Field(max_length=MAX_NAME)]
    arguments: str


class ToolCallIn(Strict):
    id: Annotated[str, Field(max_length=MAX_NAME)]
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: Annotated[str, Field(max_length=MAX_NAME)] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: Annotated[str, Field(max_length=MAX_NAME)] | None = None
    reasoning_content: str | None = None
    # Echoed back by clients that append the SDK's response message to their history.
    refusal: str | None = None
    annotations: list[Any] | None = None
    audio: None = None
    function_call: None = None


# -- tools and formats ------------------------------------------------------------------------


class FunctionDef(Strict):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(Strict):
    name: FunctionName


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchemaSpec(Strict):
    name: Annotated[str, Field(max_length=64)] = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None


Effort = Literal["none", "minimal", "low", "medium", "high"]


class ChatTemplateKwargs(Strict):
    """The template switches a request may set; the template itself never comes from a request."""

    enable_thinking: bool | None = None
    preserve_thinking: bool | None = None  # Qwen3.6: earlier turns keep their reasoning
    reasoning_effort: Effort | None = None  # Qwen3.8


# -- requests --------------------------------------------------------------------------------


class Sampling(Strict):
    model: ModelName
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: MaxTokens = None
    temperature: Temperature = None
    top_p: TopP = None
    top_k: TopK = None
    min_p: MinP = None
    presence_penalty: PresencePenalty = None
    frequency_penalty: FrequencyPenalty = None
    repeat_penalty: RepeatPenalty = None
    seed: Seed = None
    stop: Stop = None
    n: int | None = None
    logprobs: Any | None = None
    user: Annotated[str, Field(max_length=MAX_NAME)] | None = None
    #: Context length for this model; a different value reloads it (Ollama's num_ctx).
    num_ctx: NumCtx = None


class ChatCompletionRequest(Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_MESSAGES)]
    max_completion_tokens: MaxTokens = None
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None
    tools: Annotated[list[ToolDef], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: ChatTemplateKwargs | None = None
    #: Hosted Qwen's (DashScope's) switch for Qwen3 thinking, accepted for compatibility.
    enable_thinking: bool | None = None
    #: OpenAI's field; Qwen3.8's template maps it (none/minimal/low: no thinking), older ones get enable_thinking.
    reasoning_effort: Effort | None = None


TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


class CompletionRequest(Sampling):
    #: Text, token ids, or several of either (one choice each, as OpenAI and vLLM answer them).
    prompt: (
        str
        | Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)]
        | TokenIds
        | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_PROMPTS)]
    )
    #: 0 is allowed here: with `echo`, the prompt is scored and nothing generated.
    max_tokens: Annotated[int | None, Field(ge=0, le=LIMITS["max_tokens"][1])] = None
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = None
    response_format: ResponseFormat | None = None
