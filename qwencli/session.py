"""A conversation: system prompt, turns and options, kept within the model's context window.

Used by the REPL and one-shot runs alike. History always alternates user/assistant: a reply cut
short by Ctrl-C is kept as far as it got (it is what the user saw); a reply cut before its first
token takes its question with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Sequence
from pathlib import Path

from .backends.base import Backend
from .chat import Chunk, GenerationOptions, Image, Message
from .errors import ContextOverflow, UsageError

#: Room kept free for the reply when deciding what history fits.
REPLY_RESERVE = 1024
SAVE_FORMAT = "qwencli.conversation/1"


class Conversation:
    def __init__(
        self,
        backend: Backend,
        *,
        system: str | None = None,
        options: GenerationOptions = GenerationOptions(),
        notice: Callable[[str], None] = lambda message: None,
    ):
        self.backend = backend
        #: Images waiting for the next question (the REPL's /image, `qwen run --image` on a terminal).
        self.attachments: list[Image] = []
        self.system = system
        self.options = options
        self.turns: list[Message] = []
        self._notice = notice
        self._trim_noticed = False
        self.context_tokens: int | None = None

    # -- history ------------------------------------------------------------------------

    def messages(self) -> list[Message]:
        head = [Message("system", self.system)] if self.system else []
        return head + self.turns

    def clear(self) -> None:
        self.turns.clear()
        self.context_tokens = None

    def undo(self) -> bool:
        """Drop the last exchange (the last user message and everything after it)."""
        for i in range(len(self.turns) - 1, -1, -1):
            if self.turns[i].role == "user":
                del self.turns[i:]
                return True
        return False

    def context_used(self) -> int | None:
        if not self.turns and not self.system:
            return 0
        return self.backend.count_prompt_tokens(self.messages(), self.options)

    # -- talking ----------------------------------------------------------------------------

    def ask(self, text: str, images: Sequence[Image] = ()) -> Generator[Chunk, None, None]:
        attached = (*self.attachments, *images)
        self.attachments.clear()
        return self._reply(Message("user", text, images=attached))

    def regenerate(self) -> Generator[Chunk, None, None]:
        if not self.turns or not any(m.role == "user" for m in self.turns):
            raise UsageError("nothing to regenerate yet")
        while self.turns and self.turns[-1].role != "user":
            self.turns.pop()
        return self._reply()

    def _reply(self, question: Message | None = None) -> Generator[Chunk, None, None]:
        if question is not None:
            self.turns.append(question)
        try:
            messages = self._fit()
            stream = self.backend.chat(messages, self.options)
        except BaseException:
            # A question the backend refused (a bad image, no projector) must not stay in the history.
            if question is not None and self.turns and self.turns[-1] is question:
                self.turns.pop()
            raise
        text: list[str] = []
        reasoning: list[str] = []
        finished = False
        try:
            for chunk in stream:
                if chunk.kind == "reasoning":
                    reasoning.append(chunk.text)
                else:
                    text.append(chunk.text)
                if chunk.usage is not None:
                    self.context_tokens = chunk.usage.total_tokens
                finished = finished or chunk.finish_reason is not None
                yield chunk
        finally:
            stream.close()  # cancels generation if we got here early
            if text or reasoning or finished:
                self.turns.append(Message("assistant", "".join(text), reasoning="".join(reasoning) or None))
            else:
                self.turns.pop()  # interrupted before the first token: forget the question too

    def _fit(self) -> list[Message]:
        """The history that fits the context with room for a reply; oldest turns go first."""
        ctx = self.backend.info.context_length
        reserve = min(self.options.max_tokens or REPLY_RESERVE, max(ctx // 4, 1))
        dropped = 0
        while True:
            messages = self.messages()
            used = self.backend.count_prompt_tokens(messages, self.options)
            if used is None or used + reserve <= ctx:
                break
            user_turns = [i for i, m in enumerate(self.turns) if m.role == "user"]
            if len(user_turns) <= 1:
                if self.backend.ensure_context(used + reserve):
                    self._notice(f"context raised to {self.backend.info.context_length} tokens for this prompt")
                    break
                if used < ctx:
                    break  # it fits, with less room to answer
                self.turns.pop()
                if any(m.images for m in messages):
                    raise self._images_overflow(messages, used, ctx)
                raise ContextOverflow(
                    f"the prompt is {used} tokens but the context holds {ctx}",
                    "shorten the input, or raise the context with --ctx (up to the model's trained length)",
                )
            del self.turns[: user_turns[1]]
            dropped += 1
        if dropped and not self._trim_noticed:
            self._trim_noticed = True
            self._notice(
                f"the conversation outgrew the {ctx}-token context: dropped the oldest turns"
                " (the system prompt stays); /show tells how full it is"
            )
        return messages

    def _images_overflow(self, messages: list[Message], used: int, ctx: int) -> ContextOverflow:
        """What the images cost: the same prompt counted without them makes the difference."""
        import dataclasses

        from .backends.local import images_overflow

        text_only = self.backend.count_prompt_tokens(
            [dataclasses.replace(m, images=()) for m in messages], self.options
        )
        n_images = sum(len(m.images) for m in messages)
        return images_overflow(used, used - (text_only or 0), ctx, n_images)

    # -- files ------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        data = {
            "format": SAVE_FORMAT,
            "model": self.backend.info.name,
            "system": self.system,
            "messages": [m.to_json() for m in self.turns],
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    def load(self, path: Path) -> list[str]:
        """Replace the conversation with a saved one; what could not be restored, one line each
        (an image file that is missing or changed since /save: its message loads without it)."""
        problems: list[str] = []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
                raise ValueError("no messages")
            turns = [
                _with_images(Message.from_json(m), m.get("images") if isinstance(m, dict) else None, n, problems)
                for n, m in enumerate(data["messages"], start=1)
            ]
            system = data.get("system")
            if system is not None and not isinstance(system, str):
                raise ValueError("system is not text")
        except FileNotFoundError:
            raise UsageError(f"no such file: {path}") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path} is not a saved conversation: {exc}") from None
        self.turns = [m for m in turns if m.role != "system"]
        self.system = system
        self.context_tokens = None
        return problems


def _with_images(message: Message, saved: object, n: int, problems: list[str]) -> Message:
    """`message` with the images /save recorded (path and sha256), each read again and checked
    against its hash. One that cannot be restored is left out, and said so: a conversation about
    an image that changed would otherwise go on about a picture the model no longer sees."""
    import dataclasses

    from .errors import InvalidImage
    from .images import image_from_file

    if not saved:
        return message
    if not isinstance(saved, list):
        raise ValueError(f"message {n}: images is not a list")
    images = []
    for ref in saved:
        path = ref.get("path") if isinstance(ref, dict) else None
        sha = ref.get("sha256") if isinstance(ref, dict) else None
        if not isinstance(path, str) or not isinstance(sha, str):
            problems.append(f"message {n}: an image that was not from a file (stdin) was not saved; left out")
            continue
        if not Path(path).is_file():
            problems.append(f"message {n}: the saved image {path} is missing; left out")
            continue
        try:
            image = image_from_file(Path(path))
        except InvalidImage as exc:
            problems.append(f"message {n}: the saved image {path} cannot be read again ({exc.message}); left out")
            continue
        if image.sha256 != sha:
            problems.append(
                f"message {n}: the saved image {path} changed since it was saved"
                f" (sha256 {sha[:12]}…, now {image.sha256[:12]}…); left out"
            )
            continue
        images.append(image)
    return dataclasses.replace(message, images=tuple(images))
