"""Slash commands, one table. Each handler gets the REPL state and the text after the command;
it may return a stream of chunks for the loop to print (as `/regen` does)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import sampling
from ..chat import Chunk
from ..errors import UsageError
from ..session import Conversation
from ..thinking import EFFORTS, asked_to_think

MAX_READ_BYTES = 1 << 20


@dataclass
class ReplState:
    conversation: Conversation
    say: Callable[[str], None]
    attachments: list[tuple[str, str]] = field(default_factory=list)
    running: bool = True

    def take_attachments(self, text: str) -> str:
        """The next message, with the files from /read in front of it; image paths typed in it are
        attached (when the model can see images) and taken out of its text."""
        text = self._typed_images(text)
        if not self.attachments:
            return text
        parts = [f"Contents of {name}:\n```\n{body.rstrip()}\n```" for name, body in self.attachments]
        self.attachments.clear()
        return "\n\n".join(parts + [text])

    def _typed_images(self, text: str) -> str:
        from ..images import image_from_file
        from .image_paths import image_paths, without

        info = self.conversation.backend.info
        found = image_paths(text)
        if not found or (info.backend != "remote" and not info.takes_images):
            return text
        images = [image_from_file(path.resolve()) for _, path in found]  # a bad one: one clear line, nothing sent
        for (_, path), image in zip(found, images):
            self.conversation.attachments.append(image)
            self.say(f"Added image {path} ({image.width}×{image.height}).")
        return without(text, [typed for typed, _ in found])


Handler = Callable[[ReplState, str], "Iterator[Chunk] | None"]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    handler: Handler
    aliases: tuple[str, ...] = ()


def _help(state: ReplState, arg: str) -> None:
    width = max(len(c.usage) for c in COMMANDS)
    lines = [f"  {c.usage.ljust(width)}  {c.help}" for c in COMMANDS]
    fence, ctrl_c = '"""'.ljust(width), "Ctrl-C".ljust(width)
    lines.append(f"  {fence}  start or end a multi-line message")
    lines.append(f"  {ctrl_c}  stop the reply · Ctrl-D leaves")
    state.say("\n".join(lines))


def _bye(state: ReplState, arg: str) -> None:
    state.running = False


def _clear(state: ReplState, arg: str) -> None:
    state.conversation.clear()
    state.attachments.clear()
    state.say("Conversation cleared.")


def _system(state: ReplState, arg: str) -> None:
    if not arg:
        current = state.conversation.system
        state.say(f"System prompt: {current}" if current else "No system prompt. /system TEXT sets one.")
        return
    state.conversation.system = arg
    state.say("System prompt set.")


#: /set think: on/off/default, or a Qwen3.8 level (none, minimal, low: off; medium, high: on).
THINK_VALUES: dict[str, bool | str | None] = {
    "on": True,
    "true": True,
    "1": True,
    "off": False,
    "false": False,
    "0": False,
    "default": None,
    **{level: level for level in EFFORTS},
}

SET_KEYS: dict[str, Callable[[str], object]] = {
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "min_p": float,
    "repeat_penalty": float,
    "max_tokens": int,
    "seed": int,
    "think": lambda v: THINK_VALUES[v.lower()],
}


def _set(state: ReplState, arg: str) -> None:
    key, _, value = arg.partition(" ")
    key = key.strip().lower().replace("-", "_")
    value = value.strip()
    if key not in SET_KEYS or not value:
        raise UsageError(f"usage: /set KEY VALUE with KEY one of {', '.join(SET_KEYS)}")
    try:
        parsed = SET_KEYS[key](value)
    except (ValueError, KeyError):
        raise UsageError(f"{value!r} is not a valid value for {key}") from None
    sampling.check_value(key, parsed)  # type: ignore[arg-type]
    conversation = state.conversation
    if key == "think":
        _set_think(state, parsed, value)
        return
    conversation.options = conversation.options.replace(**{key: parsed})
    state.say(f"Set {key} to {value}.")


def _set_think(state: ReplState, parsed: object, value: str) -> None:
    """on/off/default, or a Qwen3.8 level (none … high). The sampling defaults follow the mode on
    the next turn (values set with /set stay as set)."""
    from ..thinking import unchangeable

    conversation = state.conversation
    if isinstance(parsed, str):  # a level
        conversation.options = conversation.options.replace(think=None, reasoning_effort=parsed)
    else:
        conversation.options = conversation.options.replace(think=parsed, reasoning_effort=None)
    state.say(f"Set think to {value}.")
    options = conversation.options
    why = unchangeable(conversation.backend.info.thinking, asked_to_think(options.think, options.reasoning_effort))
    if why:
        state.say(f"{conversation.backend.info.name} will not change: {why}.")


def _show(state: ReplState, arg: str) -> None:
    conversation = state.conversation
    info = conversation.backend.info
    used = conversation.context_used()
    # A remote server applies its own defaults: show only what this session sends.
    remote = info.backend == "remote"
    options = conversation.options
    # The set the next turn samples with follows the thinking asked for (a level included).
    asked = options.replace(think=asked_to_think(options.think, options.reasoning_effort))
    effective = options if remote else sampling.resolve(asked, info.family)
    settings = ", ".join(
        f"{k} {getattr(effective, k)}"
        for k in (
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "presence_penalty",
            "repeat_penalty",
            "max_tokens",
            "seed",
            "think",
            "reasoning_effort",
        )
        if getattr(effective, k) is not None
    )
    rows = [
        ("model", info.name),
        (
            "backend",
            f"{info.backend}" + (f" ({info.threads} threads, {info.gpu_layers} GPU layers)" if info.threads else ""),
        ),
        ("context", f"{used if used is not None else '?'} / {info.context_length or 'unknown'} tokens"),
        ("settings", settings or ("the server's defaults" if remote else "model defaults")),
        ("system", conversation.system or "(none)"),
        ("turns", str(sum(1 for m in conversation.turns if m.role == "user"))),
    ]
    if info.projector is not None:
        rows.append(("projector", str(info.projector)))
    if conversation.attachments:
        rows.append(("attached", ", ".join(i.source or "image" for i in conversation.attachments)))
    if info.architecture:
        rows.insert(1, ("architecture", f"{info.architecture}, {info.quantization or '?'}"))
    state.say("\n".join(f"  {k:<12} {v}" for k, v in rows))


def _regen(state: ReplState, arg: str) -> Iterator[Chunk]:
    return state.conversation.regenerate()


def _undo(state: ReplState, arg: str) -> None:
    if state.conversation.undo():
        state.say("Removed the last exchange.")
    else:
        state.say("Nothing to undo.")


def _read(state: ReplState, arg: str) -> None:
    if not arg:
        raise UsageError("usage: /read FILE")
    path = Path(arg).expanduser()
    try:
        if path.stat().st_size > MAX_READ_BYTES:
            raise UsageError(f"{arg} is larger than {MAX_READ_BYTES // 1024} KiB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no such file: {arg}") from None
    except IsADirectoryError:
        raise UsageError(f"{arg} is a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot read {arg}: {exc.strerror}") from None
    state.attachments.append((path.name, data.decode("utf-8", errors="replace")))
    state.say(f"Added {path.name} ({len(data):,} bytes) to your next message.")


def _image(state: ReplState, arg: str) -> None:
    from ..images import image_from_file

    if not arg:
        raise UsageError("usage: /image PATH")
    info = state.conversation.backend.info
    if info.backend == "torch" and not info.takes_images:
        raise UsageError(
            f"{info.name} has no vision tower and cannot read images",
            "a Qwen-VL folder (vision_config and preprocessor_config.json) reads them",
        )
    if info.backend != "remote" and not info.takes_images:
        raise UsageError(
            f"{info.name} was loaded without a vision projector and cannot read images",
            "start it with --mmproj mmproj-….gguf (or put the projector beside the model)",
        )
    image = image_from_file(Path(arg).expanduser().resolve())  # by absolute path: /save keeps it
    state.conversation.attachments.append(image)
    n = len(state.conversation.attachments)
    state.say(f"Attached {Path(arg).name} ({image.width}×{image.height}) to your next message ({n} image(s)).")


def _save(state: ReplState, arg: str) -> None:
    if not arg:
        raise UsageError("usage: /save FILE")
    try:
        state.conversation.save(Path(arg).expanduser())
    except OSError as exc:
        raise UsageError(f"cannot write {arg}: {exc.strerror}") from None
    state.say(f"Saved the conversation to {arg}.")


def _load(state: ReplState, arg: str) -> None:
    if not arg:
        raise UsageError("usage: /load FILE")
    problems = state.conversation.load(Path(arg).expanduser())
    turns = sum(1 for m in state.conversation.turns if m.role == "user")
    images = sum(len(m.images) for m in state.conversation.turns)
    state.say(f"Loaded {turns} exchanges from {arg}" + (f" with {images} image(s)." if images else "."))
    for problem in problems:
        state.say(problem)


COMMANDS: tuple[Command, ...] = (
    Command("/help", "/help", "show this help", _help, aliases=("/?",)),
    Command("/bye", "/bye", "leave (also /exit, Ctrl-D)", _bye, aliases=("/exit", "/quit")),
    Command("/clear", "/clear", "forget the conversation (keeps the system prompt)", _clear),
    Command("/system", "/system TEXT", "set the system prompt", _system),
    Command("/set", "/set KEY VALUE", f"set {', '.join(SET_KEYS)}", _set),
    Command("/show", "/show", "model, backend, context used, settings", _show),
    Command("/regen", "/regen", "answer the last message again", _regen),
    Command("/undo", "/undo", "remove the last exchange", _undo),
    Command("/read", "/read FILE", "add a file to your next message", _read),
    Command("/image", "/image PATH", "attach an image to your next message (repeatable)", _image),
    Command("/save", "/save FILE", "save the conversation as JSON", _save),
    Command("/load", "/load FILE", "load a conversation saved with /save", _load),
)

_BY_NAME = {name: c for c in COMMANDS for name in (c.name, *c.aliases)}


def find(line: str) -> tuple[Command, str] | None:
    """The command a line invokes and its argument, or None if it is not a command."""
    if not line.startswith("/"):
        return None
    name, _, arg = line.strip().partition(" ")
    command = _BY_NAME.get(name.lower())
    if command is None:
        raise UsageError(f"unknown command {name}", "type /help for the list")
    return command, arg.strip()
