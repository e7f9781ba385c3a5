"""The console's one table renderer and one size formatter, which `qwen list`, `qwen ps` and
`qwen list --host` all print through."""

from __future__ import annotations

import pytest

from qwencli.console import counted, human_size, table


def test_table_pads_columns_with_two_spaces_and_no_trailing_blanks():
    rows = [("NAME", "SIZE", "FORMAT"), ("qwen2.5-7b", "4.7 GB", ""), ("q", "1 B", "gguf")]
    assert table(rows) == "NAME        SIZE    FORMAT\nqwen2.5-7b  4.7 GB\nq           1 B     gguf\n"


def test_a_header_alone_is_one_line():
    assert table([("NAME", "OWNED BY")]) == "NAME  OWNED BY\n"


@pytest.mark.parametrize("n, text", [(0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (1_500_000, "1.5 MB"),
                                     (4_700_000_000, "4.7 GB"), (2.5e15, "2500.0 TB")])
def test_human_size_uses_decimal_units(n, text):
    assert human_size(n) == text


def test_counted_says_one_without_a_plural():
    assert (counted(1, "model"), counted(0, "model"), counted(2, "day")) == ("1 model", "0 models", "2 days")
