"""Request bodies of the OpenAI endpoints we serve, as strict pydantic models.

Strict and closed: a field we do not know is a 400 naming it (never silently ignored), a number
sent as a string is a 400, and every number has the bounds of `qwencli.sampling.LIMITS`.
A few fields are accepted only with the value that means "nothing special" (`n: 1`,
`logprobs: false`); other values are rejected in `jobs.py` with a message saying so.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

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


def _bounded(name: str, kind: type) -> Any:
    low, high = LIMITS[name]
    return Annotated[Optional[kind], Field(ge=kind(low), le=kind(high))]


Temperature = _bounded("temperature", float)
TopP = _bounded("top_p", float)
TopK = _bounded("top_k", int)
MinP = _bounded("min_p", float)
RepeatPenalty = _bounded("repeat_penalty", float)
PresencePenalty = _bounded("presence_penalty", float)
FrequencyPenalty = _bounded("frequency_penalty", float)
MaxTokens = _bounded("max_tokens", int)
Seed = _bounded("seed", int)
NumCtx = Annotated[Optional[int], Field(ge=MIN_NUM_CTX, le=MAX_NUM_CTX)]
StopString = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
Stop = Optional[Union[StopString, Annotated[list[StopString], Field(max_length=MAX_STOPS)]]]
ModelName = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(Strict):
    include_usage: Optional[bool] = None
    # Padding against traffic analysis on OpenAI's links; nothing to pad on a local server.
    include_obfuscation: Optional[bool] = None


# -- messages -------------------------------------------------------------------------------


class ContentPart(BaseModel):
    """A part of a message's content. Only text is supported; others are refused by name."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: str
    text: Optional[str] = None


class FunctionCallIn(Strict):
    name: Annotated[str, Field(max_length=MAX_NAME)]
    arguments: str


class ToolCallIn(Strict):
    id: Annotated[str, Field(max_length=MAX_NAME)]
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[ContentPart], None] = None
    name: Optional[Annotated[str, Field(max_length=MAX_NAME)]] = None
    tool_calls: Optional[list[ToolCallIn]] = None
    tool_call_id: Optional[Annotated[str, Field(max_length=MAX_NAME)]] = None
    reasoning_content: Optional[str] = None
    # Echoed back by clients that append the SDK's response message to their history.
    refusal: Optional[str] = None
    annotations: Optional[list[Any]] = None
    audio: None = None
    function_call: None = None


# -- tools and formats ------------------------------------------------------------------------


class FunctionDef(Strict):
    name: FunctionName
    description: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None
    strict: Optional[bool] = None


class ToolDef(Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(Strict):
    name: FunctionName


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Union[Literal["none", "auto", "required"], NamedToolChoice]


class JsonSchemaSpec(Strict):
    name: Annotated[str, Field(max_length=64)] = "response"
    description: Optional[str] = None
    schema_: Optional[dict[str, Any]] = Field(default=None, alias="schema")
    strict: Optional[bool] = None

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JsonSchemaSpec] = None


class ChatTemplateKwargs(Strict):
    """The only template switch a request may set; the template itself never comes from a request."""

    enable_thinking: Optional[bool] = None


# -- requests --------------------------------------------------------------------------------


class Sampling(Strict):
    model: ModelName
    stream: Optional[bool] = False
    stream_options: Optional[StreamOptions] = None
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
    n: Optional[int] = None
    logprobs: Optional[Any] = None
    user: Optional[Annotated[str, Field(max_length=MAX_NAME)]] = None
    #: Context length for this model; a different value reloads it (Ollama's num_ctx).
    num_ctx: NumCtx = None


class ChatCompletionRequest(Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_MESSAGES)]
    max_completion_tokens: MaxTokens = None
    top_logprobs: Optional[int] = None
    response_format: Optional[ResponseFormat] = None
    tools: Optional[Annotated[list[ToolDef], Field(max_length=MAX_TOOLS)]] = None
    tool_choice: Optional[ToolChoice] = None
    parallel_tool_calls: Optional[bool] = None
    chat_template_kwargs: Optional[ChatTemplateKwargs] = None
    #: Hosted Qwen's (DashScope's) switch for Qwen3 thinking, accepted for compatibility.
    enable_thinking: Optional[bool] = None


class CompletionRequest(Sampling):
    prompt: Union[str, Annotated[list[str], Field(min_length=1)]]
    echo: Optional[bool] = None
    suffix: Optional[str] = None
    best_of: Optional[int] = None
    response_format: Optional[ResponseFormat] = None
