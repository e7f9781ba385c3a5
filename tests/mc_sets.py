"""Small multiple-choice data sets written by the tests, in each anchor's own file format: MMLU's
headerless CSVs in dev/ and test/, HellaSwag and Winogrande as OpenCompass's folders hold them,
and llama-perplexity's three files (hellaswag's 6 lines a task, winogrande's CSV, the binary
multiple-choice format, written here from its reader in perplexity.cpp)."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"), ("Japan", "Tokyo"),
            ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Peru", "Lima")]


def _options(right: str, pool: list[str], shift: int) -> tuple[list[str], int]:
    others = [p for p in pool if p != right][shift : shift + 3]
    options = others[:]
    options.insert(shift % 4, right)
    return options[:4], options.index(right)


def _capital_rows(pairs, shift0=0) -> list[list[str]]:
    pool = [c for _, c in CAPITALS]
    rows = []
    for i, (country, capital) in enumerate(pairs):
        options, answer = _options(capital, pool, (i + shift0) % 4)
        rows.append([f"What is the capital of {country}?", *options, "ABCD"[answer]])
    return rows


def _sum_rows(pairs) -> list[list[str]]:
    rows = []
    for i, (a, b) in enumerate(pairs):
        right = a + b
        options = [str(right + 1), str(right - 1), str(right + 2)]
        options.insert(i % 4, str(right))
        rows.append([f"What is {a} + {b}?", *options, "ABCD"[i % 4]])
    return rows


def write_mmlu(root: Path) -> Path:
    """Two subjects, 5 dev rows each (the preset's shots), 4 + 3 test rows."""
    for split in ("dev", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
    sets = {
        "geography": (_capital_rows(CAPITALS[:5]), _capital_rows(CAPITALS[5:9], 1)),
        "elementary_mathematics": (_sum_rows([(1, 1), (2, 3), (4, 4), (5, 2), (3, 3)]),
                                   _sum_rows([(7, 8), (9, 9), (6, 7)])),
    }
    for subject, (dev, test) in sets.items():
        for split, rows in (("dev", dev), ("test", test)):
            with (root / split / f"{subject}_{split}.csv").open("w", newline="") as f:
                csv.writer(f).writerows(rows)
    return root


HELLASWAG = [
    ("Baking cookies", "A woman mixes flour and sugar in a bowl. She", ["puts the dough on a tray and bakes it.",
     "throws the bowl at the ceiling.", "sings to the flour until it melts.", "paints the oven blue."], 0),
    ("Washing a car", "A man sprays water on a dirty car. He", ["eats the hose for lunch.",
     "scrubs the doors with a soapy sponge.", "drives the car into a lake.", "reads the car a story."], 1),
    ("Playing guitar", "A boy sits down with a guitar. He", ["uses the guitar as a boat.",
     "feeds the guitar some grass.", "strums the strings and plays a song.", "mails the guitar to the moon."], 2),
    ("Brushing teeth", "A girl puts toothpaste on a brush. She", ["plants the brush in the garden.",
     "brushes the dog's tail.", "melts the brush in the oven.", "brushes her teeth in front of the mirror."], 3),
]


def _hellaswag_rows(count: int, offset: int = 0) -> list[dict]:
    rows = []
    for i in range(count):
        label, ctx, endings, answer = HELLASWAG[(i + offset) % len(HELLASWAG)]
        rows.append({"activity_label": label, "ctx": ctx, "endings": endings, "label": answer})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_hellaswag(root: Path, questions: int = 3) -> Path:
    """OpenCompass's folder: hellaswag.jsonl to score, hellaswag_train_sampled25.jsonl for the
    10 shots; rows as the raw data set has them (ctx, endings, label)."""
    write_jsonl(root / "hellaswag_train_sampled25.jsonl", _hellaswag_rows(12))
    write_jsonl(root / "hellaswag.jsonl", _hellaswag_rows(questions, offset=1))
    return root


WINOGRANDE = [
    ("The trophy doesn't fit into the brown suitcase because the _ is too large.", "trophy", "suitcase", "1"),
    ("The trophy doesn't fit into the brown suitcase because the _ is too small.", "trophy", "suitcase", "2"),
    ("Sarah was a much better surgeon than Maria so _ always got the harder cases.", "Sarah", "Maria", "1"),
    ("Sarah was a much better surgeon than Maria so _ always got the easier cases.", "Sarah", "Maria", "2"),
    ("The cat chased the mouse, so the _ ran into its hole.", "cat", "mouse", "2"),
    # Few tokens after the blank: llama-perplexity scores from the shared prefix here.
    ("My dog would rather eat a bone than a _.", "bone", "salad", "2"),
]


def write_winogrande(root: Path, questions: int = 3) -> Path:
    rows = [{"sentence": s, "option1": a, "option2": b, "answer": ans} for s, a, b, ans in WINOGRANDE]
    write_jsonl(root / "train_xs.jsonl", (rows * 2)[:10])
    write_jsonl(root / "dev.jsonl", rows[1 : 1 + questions])
    return root


def write_llama_hellaswag(path: Path) -> Path:
    lines = []
    for label, ctx, endings, answer in HELLASWAG:
        lines += [f"{label}: {ctx}", str(answer), *endings]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_llama_winogrande(path: Path) -> Path:
    lines = [f'{i},"{s}",{a},{b},{ans}' if "," in s else f"{i},{s},{a},{b},{ans}"
             for i, (s, a, b, ans) in enumerate(WINOGRANDE)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<I", len(data)) + data


def write_llama_multiple_choice(path: Path, tasks: list[tuple[str, list[str], int]]) -> Path:
    """llama.cpp's binary format: count, offsets, then question, mc1 (answers + labels), mc2."""
    bodies = []
    for question, answers, right in tasks:
        mc1 = struct.pack("<I", len(answers)) + b"".join(_string(a) for a in answers)
        mc1 += struct.pack(f"<{len(answers)}i", *[int(i == right) for i in range(len(answers))])
        mc2 = struct.pack("<I", 0)
        bodies.append(_string(question) + mc1 + mc2)
    header = 4 + 4 * len(tasks)
    offsets, at = [], header
    for body in bodies:
        offsets.append(at)
        at += len(body)
    path.write_bytes(struct.pack(f"<I{len(tasks)}I", len(tasks), *offsets) + b"".join(bodies))
    return path


MC_TASKS = [
    ("Question: What is the capital of France?\nAnswer:", ["Rome", "Paris", "Oslo"], 1),
    ("Question: What is 2 + 2?\nAnswer:", ["5", "4", "22", "3"], 1),
    ("The opposite of hot is", ["cold", "warm"], 0),
]
