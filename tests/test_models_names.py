"""Model names: the shipped catalog, its parser, and what a user may type (a table of cases)."""

from __future__ import annotations

import random

import pytest

from qwencli.errors import ModelNotFound, UnsupportedModel, UsageError
from qwencli.models import catalog as catalog_module
from qwencli.models import names
from qwencli.models.pull import require_gguf_repo

# -- the catalog --------------------------------------------------------------------------------------

def test_shipped_catalog_parses_and_every_gguf_row_is_consistent():
    cat = catalog_module.load()
    ggufs = [e for e in cat.entries if e.format == catalog_module.GGUF]
    assert len(ggufs) >= 30
    for e in ggufs:
        assert names.valid_repo_id(e.repo), e.repo
        assert e.repo.lower().endswith("-gguf"), e.repo
        assert e.default_quant in e.quants, e.name
        assert e.approx_bytes > 0, e.name
    # One GGUF row per name, and an Ollama tag names exactly one model.
    assert len({e.name for e in ggufs}) == len(ggufs)
    aliases = [a for e in cat.entries for a in e.aliases]
    assert len(aliases) == len(set(aliases))


def test_catalog_parser_rejects_a_short_row_with_its_line_number():
    header = "\t".join(["name", "family", "size", "format", "repo", "default_quant", "quants", "context",
                        "sampling", "approx_bytes", "verified", "aliases"])
    good = "\t".join(["x-1b", "x", "1B", "gguf", "o/X-GGUF", "q4_k_m", "q4_k_m,q8_0", "4096", "qwen", "1", "yes", "x:1b"])
    parsed = catalog_module.parse_catalog(f"# comment\n{header}\n{good}\n")
    assert parsed.entries[0].quants == ("q4_k_m", "q8_0") and parsed.entries[0].aliases == ("x:1b",)
    with pytest.raises(ValueError, match="line 3"):
        catalog_module.parse_catalog(f"{header}\n{good}\nx-2b\tx\n")


# -- catalog names and Ollama tags --------------------------------------------------------------------

NAMES = [
    # (typed, repo, quant)
    ("qwen1.5-0.5b", "Qwen/Qwen1.5-0.5B-Chat-GGUF", None),
    ("qwen1.5-1.8b", "Qwen/Qwen1.5-1.8B-Chat-GGUF", None),
    ("qwen1.5-4b", "Qwen/Qwen1.5-4B-Chat-GGUF", None),
    ("qwen1.5-7b", "Qwen/Qwen1.5-7B-Chat-GGUF", None),
    ("qwen1.5-14b", "Qwen/Qwen1.5-14B-Chat-GGUF", None),
    ("qwen1.5-32b", "Qwen/Qwen1.5-32B-Chat-GGUF", None),
    ("qwen1.5-72b", "Qwen/Qwen1.5-72B-Chat-GGUF", None),
    ("qwen1.5-110b", "Qwen/Qwen1.5-110B-Chat-GGUF", None),
    ("qwen2-0.5b", "Qwen/Qwen2-0.5B-Instruct-GGUF", None),
    ("qwen2-7b", "Qwen/Qwen2-7B-Instruct-GGUF", None),
    ("qwen2-57b-a14b", "Qwen/Qwen2-57B-A14B-Instruct-GGUF", None),
    ("qwen2-72b", "Qwen/Qwen2-72B-Instruct-GGUF", None),
    ("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", None),
    ("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct-GGUF", None),
    ("qwen2.5-72b", "Qwen/Qwen2.5-72B-Instruct-GGUF", None),
    ("Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct-GGUF", None),
    ("qwen2.5-coder-1.5b", "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", None),
    ("qwen2.5-coder-32b", "Qwen/Qwen2.5-Coder-32B-Instruct-GGUF", None),
    ("qwq", "Qwen/QwQ-32B-GGUF", None),
    ("qwq-32b", "Qwen/QwQ-32B-GGUF", None),
    ("qwen3-0.6b", "Qwen/Qwen3-0.6B-GGUF", None),
    ("qwen3-8b", "Qwen/Qwen3-8B-GGUF", None),
    ("qwen3-32b", "Qwen/Qwen3-32B-GGUF", None),
    ("qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B-GGUF", None),
    ("qwen3-235b-a22b", "Qwen/Qwen3-235B-A22B-GGUF", None),
    # :quant, any case, and auto
    ("qwen1.5-7b:q5_k_m", "Qwen/Qwen1.5-7B-Chat-GGUF", "q5_k_m"),
    ("qwen1.5-7b:Q5_K_M", "Qwen/Qwen1.5-7B-Chat-GGUF", "q5_k_m"),
    # torch builds by Qwen's repo suffixes (the route picks their repos: tests/test_choose.py)
    ("qwen2.5-7b:awq", "Qwen/Qwen2.5-7B-Instruct-GGUF", "awq"),
    ("qwen2.5-7b:GPTQ-Int4", "Qwen/Qwen2.5-7B-Instruct-GGUF", "gptq_int4"),
    ("qwen3-8b:fp8", "Qwen/Qwen3-8B-GGUF", "fp8"),
    ("qwen2.5-7b:auto", "Qwen/Qwen2.5-7B-Instruct-GGUF", "auto"),
    ("qwen3-8b:iq4_xs", "Qwen/Qwen3-8B-GGUF", "iq4_xs"),
    # Ollama tags (`qwen` is Qwen1.5)
    ("qwen:7b", "Qwen/Qwen1.5-7B-Chat-GGUF", None),
    ("qwen:110b", "Qwen/Qwen1.5-110B-Chat-GGUF", None),
    ("qwen", "Qwen/Qwen1.5-4B-Chat-GGUF", None),
    ("qwen:7b-chat-v1.5-q5_K_M", "Qwen/Qwen1.5-7B-Chat-GGUF", "q5_k_m"),
    ("qwen2.5:0.5b", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", None),
    ("qwen2.5:7b-instruct-q4_K_M", "Qwen/Qwen2.5-7B-Instruct-GGUF", "q4_k_m"),
    ("qwen2.5-coder:7b", "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", None),
    ("qwen3:8b", "Qwen/Qwen3-8B-GGUF", None),
    ("qwen3:30b", "Qwen/Qwen3-30B-A3B-GGUF", None),
    ("qwen3", "Qwen/Qwen3-8B-GGUF", None),
    ("qwq:32b", "Qwen/QwQ-32B-GGUF", None),
    # any hub repo
    ("Qwen/QwQ-32B-GGUF", "Qwen/QwQ-32B-GGUF", None),
    ("Qwen/QwQ-32B-GGUF:Q8_0", "Qwen/QwQ-32B-GGUF", "q8_0"),
    ("hf.co/Qwen/QwQ-32B-GGUF", "Qwen/QwQ-32B-GGUF", None),
    ("hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:IQ4_XS", "bartowski/Qwen2.5-7B-Instruct-GGUF", "iq4_xs"),
    ("https://huggingface.co/someone/My_Model.v2-GGUF", "someone/My_Model.v2-GGUF", None),
]


@pytest.mark.parametrize("typed,repo,quant", NAMES)
def test_names_resolve_to_repo_and_quant(typed, repo, quant):
    ref = names.parse(typed)
    assert (ref.repo, ref.quant) == (repo, quant)
    assert ref.kind == ("repo" if "/" in typed else "catalog")


def test_every_catalog_name_and_alias_parses_back_to_its_own_row():
    cat = catalog_module.load()
    for e in cat.entries:
        assert names.parse(e.name).entry.name == e.name
        for alias in e.aliases:
            assert names.parse(alias).entry.name == e.name, alias


def test_catalog_ref_carries_the_catalog_facts():
    ref = names.parse("qwen2.5-7b")
    assert ref.display == "qwen2.5-7b" and ref.entry.default_quant == "q4_k_m"
    assert ref.entry.hints["family"] == "qwen2.5" and ref.entry.hints["context"] == 32768
    assert names.parse("qwen2.5-7b:Q8_0").display == "qwen2.5-7b:q8_0"
    # A repo the catalog knows gets the catalog's facts too.
    assert names.parse("Qwen/Qwen3-8B-GGUF").entry.name == "qwen3-8b"


def test_qwen15_moe_has_no_gguf_and_points_to_the_torch_backend():
    ref = names.parse("qwen1.5-moe-a2.7b")
    with pytest.raises(UnsupportedModel) as caught:
        require_gguf_repo(ref)
    assert "no GGUF" in caught.value.message and "Qwen/Qwen1.5-MoE-A2.7B-Chat" in caught.value.message
    assert "--backend torch" in caught.value.hint


def test_local_paths_stay_paths(tmp_path):
    model = tmp_path / "m.gguf"
    assert names.parse(str(model)).kind == "path"
    assert names.parse("./x.gguf").kind == "path"
    assert names.parse("~/models/x.gguf").kind == "path"


# -- bad input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("typed,suggested", [
    ("qwne2.5-7b", "qwen2.5-7b"),
    ("qwen3-8", "qwen3-8b"),
    ("qwen2.5-7", "qwen2.5-7b"),
    ("qwen3:9b", "qwen3:8b"),
])
def test_unknown_name_suggests_the_closest(typed, suggested):
    with pytest.raises(ModelNotFound) as caught:
        names.parse(typed)
    assert typed in caught.value.message
    assert suggested in caught.value.hint


@pytest.mark.parametrize("typed,message", [
    ("a/../b", "not a hub repo id"),
    ("hf.co/../etc/passwd", "not a hub repo id"),
    ("hf.co//etc/passwd", "not a hub repo id"),
    ("owner/..", "not a hub repo id"),
    ("owner/repo/extra", "not a hub repo id"),
    ("owner\\repo", "not a hub repo id"),
    ("own er/repo", "not a hub repo id"),
    ("owner/re--po", "not a hub repo id"),
    ("owner/repo.git", "not a hub repo id"),
    ("Qwen/Qwen\x00x", "control character"),
    ("qwen2.5-7b\x00", "control character"),
    ("qwen2.5-7b\n", "control character"),
    ("", "no model name"),
    ("   ", "no model name"),
    ("q" * 300, "characters long"),
    ("qwen1.5-7b:", "names no quantization"),
    ("Qwen/QwQ-32B-GGUF:", "names no quantization"),
    ("qwen1.5-7b:foo", "not a quantization name"),
    ("qwen1.5-7b:q4/../../x", "not a hub repo id"),
    ("Qwen/QwQ-32B-GGUF:../../x", "not a quantization name"),
    (":q4_k_m", "not a model name"),
])
def test_malformed_names_are_usage_errors(typed, message):
    with pytest.raises(UsageError) as caught:
        names.parse(typed)
    assert message in caught.value.message


def test_base_model_tags_say_the_catalog_holds_instruct_models():
    with pytest.raises(ModelNotFound, match="base"):
        names.parse("qwen2.5:7b-text")


# -- repo ids agree with huggingface_hub --------------------------------------------------------------

def _hf_accepts(repo: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError:
        return False
    return True


@pytest.mark.parametrize("repo", [
    "Qwen/Qwen2.5-7B-Instruct-GGUF", "a/b", "_a/b_", "a_/_b", "1/2", "a.b/c-d", "-a/b", "a/b-", ".a/b", "a/b.",
    "a/b.git", "a--b/c", "a/b..c", "a/" + "x" * 96, "a/" + "x" * 97, "x" * 96 + "/a", "x" * 97 + "/a",
    "café/x", "a/b c", "a/b/c", "ab", "a/", "/b", "a/b\u0660",
])
def test_repo_id_rules_agree_with_huggingface_hub(repo):
    assert names.valid_repo_id(repo) == (repo.count("/") == 1 and _hf_accepts(repo))


def test_repo_id_rules_agree_with_huggingface_hub_on_random_strings():
    rng = random.Random(1234)
    alphabet = "ab9_.-/ é"
    for _ in range(3000):
        repo = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9)))
        assert names.valid_repo_id(repo) == (repo.count("/") == 1 and _hf_accepts(repo)), repr(repo)
