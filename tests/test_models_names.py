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
        assert e.approx_bytes > 0, e.name
        assert e.publisher in catalog_module.SOURCE_PREFERENCE, e.repo
    for name in {e.name for e in ggufs}:
        sources = cat.gguf_sources(name)
        # The sources of a name agree on its default quant, and at least one has it.
        assert len({e.default_quant for e in sources}) == 1, name
        assert any(e.has_quant(e.default_quant) for e in sources), name
        assert len({e.repo for e in sources}) == len(sources), name
    # An Ollama tag names exactly one model; the repos are all different.
    aliases = [a for e in cat.entries for a in e.aliases]
    assert len(aliases) == len(set(aliases))
    assert len({e.repo.lower() for e in cat.entries}) == len(cat.entries)


def test_every_row_has_known_sampling_thinking_and_tool_dialect():
    from qwencli.sampling import FAMILY_DEFAULTS

    for e in catalog_module.load().entries:
        assert e.sampling in FAMILY_DEFAULTS, (e.name, e.sampling)
        assert e.thinking in ("none", "switch", "on", "off", "always", "never"), e.name
        assert e.tools in ("none", "hermes", "xml"), e.name
        assert e.task in catalog_module.TASKS, e.name


# (name, repo, default quant, task, family): the embedding and rerank models, one row each.
EMBEDDING_AND_RERANK = [
    ("qwen3-embedding-0.6b", "Qwen/Qwen3-Embedding-0.6B-GGUF", "q8_0", "embedding", "qwen3-embedding"),
    ("qwen3-embedding-4b", "Qwen/Qwen3-Embedding-4B-GGUF", "q8_0", "embedding", "qwen3-embedding"),
    ("qwen3-embedding-8b", "Qwen/Qwen3-Embedding-8B-GGUF", "q8_0", "embedding", "qwen3-embedding"),
    ("qwen3-reranker-0.6b", "ggml-org/Qwen3-Reranker-0.6B-Q8_0-GGUF", "q8_0", "rerank", "qwen3-reranker"),
    ("qwen3-reranker-4b", "ggml-org/Qwen3-Reranker-4B-Q8_0-GGUF", "q8_0", "rerank", "qwen3-reranker"),
    ("qwen3-reranker-8b", "ggml-org/Qwen3-Reranker-8B-Q8_0-GGUF", "q8_0", "rerank", "qwen3-reranker"),
]


@pytest.mark.parametrize("name,repo,quant,task,family", EMBEDDING_AND_RERANK)
def test_embedding_and_rerank_rows_say_what_they_are_for(name, repo, quant, task, family):
    entry = catalog_module.load().gguf(name)
    assert (entry.repo, entry.default_quant, entry.task, entry.family) == (repo, quant, task, family)
    assert entry.hints["task"] == task and entry.thinking == "none" and entry.tools == "none"
    assert entry.context == 32768
    # A smaller size that fits is never a model for another task.
    assert {e.task for e in catalog_module.load().same_family(entry)} == {task}


@pytest.mark.parametrize("typed,name", [
    ("qwen3-embedding:0.6b", "qwen3-embedding-0.6b"),
    ("qwen3-embedding:8b", "qwen3-embedding-8b"),
    ("qwen3-embedding", "qwen3-embedding-8b"),  # Ollama's latest
    ("Qwen/Qwen3-Embedding-4B-GGUF", "qwen3-embedding-4b"),
    ("qwen3-reranker-0.6b:Q8_0", "qwen3-reranker-0.6b"),
])
def test_embedding_and_rerank_names_parse_to_their_rows(typed, name):
    assert names.parse(typed).entry.name == name


def test_chat_rows_stay_chat_and_no_chat_family_suggests_an_embedder():
    cat = catalog_module.load()
    assert cat.gguf("qwen3-8b").task == "chat" and cat.gguf("qwen3-0.6b").hints["task"] == "chat"
    assert {e.task for e in cat.same_family(cat.gguf("qwen3-8b"))} == {"chat"}


def test_community_sources_follow_the_written_preference():
    cat = catalog_module.load()
    # Qwen publishes no GGUF of 3.5: ggml-org's build first (it has the 0.8B default, Q8_0).
    assert [e.publisher for e in cat.gguf_sources("qwen3.5-0.8b")] == [
        "ggml-org", "unsloth", "bartowski", "lmstudio-community"]
    assert cat.gguf("qwen3.5-0.8b").repo == "ggml-org/Qwen3.5-0.8B-GGUF"
    # ggml-org's 27B is Q8_0 only: the default Q4_K_M comes from the next publisher that has it.
    assert cat.gguf("qwen3.6-27b").repo == "unsloth/Qwen3.6-27B-GGUF"
    assert cat.gguf("qwen3.6-27b", "q8_0").repo == "ggml-org/Qwen3.6-27B-GGUF"
    # Qwen's own GGUF comes before any community one.
    assert cat.gguf("qwen3-next-80b-a3b-instruct").repo == "Qwen/Qwen3-Next-80B-A3B-Instruct-GGUF"
    assert not cat.gguf("qwen3.6-27b").official and cat.gguf("qwen3-next-80b-a3b-instruct").official
    # Unknown publishers rank last (a hand-added row still works).
    extra = catalog_module.CatalogEntry(
        "qwen3.6-27b", "qwen3.6", "27B", "gguf", "someone/Qwen3.6-27B-GGUF", "q4_k_m", ("q4_k_m",), 262144,
        "qwen3.5", 1, "guess", "on", "xml", ())
    mixed = catalog_module.Catalog((extra, *cat.rows("qwen3.6-27b")))
    assert mixed.gguf_sources("qwen3.6-27b")[-1].repo == "someone/Qwen3.6-27B-GGUF"


def test_catalog_parser_rejects_a_short_row_with_its_line_number():
    header = "\t".join(["name", "family", "size", "format", "repo", "default_quant", "quants", "context",
                        "sampling", "approx_bytes", "verified", "thinking", "tools", "aliases"])
    good = "\t".join(["x-1b", "x", "1B", "gguf", "o/X-GGUF", "q4_k_m", "q4_k_m,q8_0", "4096", "qwen", "1", "yes",
                      "none", "hermes", "x:1b"])
    parsed = catalog_module.parse_catalog(f"# comment\n{header}\n{good}\n")
    assert parsed.entries[0].quants == ("q4_k_m", "q8_0") and parsed.entries[0].aliases == ("x:1b",)
    with pytest.raises(ValueError, match="line 3"):
        catalog_module.parse_catalog(f"{header}\n{good}\nx-2b\tx\n")


def test_catalog_task_column_may_be_left_off_and_is_checked():
    header = "\t".join(["name", "family", "size", "format", "repo", "default_quant", "quants", "context",
                        "sampling", "approx_bytes", "verified", "thinking", "tools", "aliases", "task"])
    chat = "\t".join(["x-1b", "x", "1B", "gguf", "o/X-GGUF", "q8_0", "q8_0", "4096", "qwen", "1", "yes", "none",
                      "none", ""])
    ranker = chat.replace("x-1b", "r-1b").replace("o/X-GGUF", "o/R-GGUF") + "\trerank"
    parsed = catalog_module.parse_catalog(f"{header}\n{chat}\n{ranker}\n")
    assert [e.task for e in parsed.entries] == ["chat", "rerank"]
    with pytest.raises(ValueError, match="line 2: task 'ranking'"):
        catalog_module.parse_catalog(f"{header}\n{chat}\tranking\n")
    with pytest.raises(ValueError, match="line 2"):  # only the optional column may be missing
        catalog_module.parse_catalog(f"{header}\n{chat.rsplit(chr(9), 1)[0]}\n")


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
    # 2025-2026: 2507, Coder, Next, and the community GGUF of 3.5, 3.6 and 3.8
    ("qwen3-4b-instruct-2507", "Qwen/Qwen3-4B-Instruct-2507-GGUF", None),
    ("qwen3:4b-instruct", "Qwen/Qwen3-4B-Instruct-2507-GGUF", None),
    ("qwen3:30b-a3b-thinking-2507", "Qwen/Qwen3-30B-A3B-Thinking-2507-GGUF", None),
    ("qwen3:30b-a3b-instruct-2507:q8_0", "Qwen/Qwen3-30B-A3B-Instruct-2507-GGUF", "q8_0"),
    ("qwen3-coder-30b-a3b", "Qwen/Qwen3-Coder-30B-A3B-Instruct-GGUF", None),
    ("qwen3-coder:30b", "Qwen/Qwen3-Coder-30B-A3B-Instruct-GGUF", None),
    ("qwen3-coder", "Qwen/Qwen3-Coder-30B-A3B-Instruct-GGUF", None),
    ("qwen3-coder-next", "Qwen/Qwen3-Coder-Next-GGUF", None),
    ("qwen3-next-80b-a3b-instruct", "Qwen/Qwen3-Next-80B-A3B-Instruct-GGUF", None),
    ("qwen3-next:80b", "Qwen/Qwen3-Next-80B-A3B-Instruct-GGUF", None),
    ("qwen3.5-0.8b", "ggml-org/Qwen3.5-0.8B-GGUF", None),
    ("qwen3.5:9b", "unsloth/Qwen3.5-9B-GGUF", None),
    ("qwen3.5:9b-q8_0", "ggml-org/Qwen3.5-9B-GGUF", "q8_0"),
    ("qwen3.5", "unsloth/Qwen3.5-9B-GGUF", None),
    ("qwen3.5:35b", "unsloth/Qwen3.5-35B-A3B-GGUF", None),
    ("qwen3.5-397b-a17b", "unsloth/Qwen3.5-397B-A17B-GGUF", None),
    ("qwen3.6-27b", "unsloth/Qwen3.6-27B-GGUF", None),
    ("qwen3.6:35b-a3b", "unsloth/Qwen3.6-35B-A3B-GGUF", None),
    ("qwen3.8-27b:UD-Q4_K_XL", "unsloth/Qwen3.8-27B-GGUF", "ud_q4_k_xl"),
    ("qwen3.8:27b", "unsloth/Qwen3.8-27B-GGUF", None),
    ("qwen3.8-flash-next", "unsloth/Qwen3.8-Flash-Next-GGUF", None),
    ("hf.co/unsloth/Qwen3.6-27B-GGUF:UD-Q4_K_XL", "unsloth/Qwen3.6-27B-GGUF", "ud_q4_k_xl"),
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


# -- hosted names -------------------------------------------------------------------------------------

@pytest.mark.parametrize("typed", ["qwen-max", "qwen-max-2025-01-25", "qwen2.5-max", "qwen-plus-latest",
                                   "qwen3-max", "qwen3-max-preview", "qwen3.5-plus", "qwen3.5-flash",
                                   "qwen3.6-plus", "qwen3-coder-plus", "qwen3.8-flash", "Qwen3.5-Plus"])
def test_hosted_names_old_and_2026_are_hosted(typed):
    from qwencli.models import hosted

    assert hosted.is_hosted(typed, local_names=frozenset(catalog_module.load().names))


def test_a_name_that_is_both_hosted_and_open_runs_the_open_weights_unless_remote_is_asked(monkeypatch):
    from qwencli.models import hosted
    from qwencli.models.resolve import resolve

    local = frozenset(catalog_module.load().names)
    assert hosted.is_hosted("qwen3-coder-next") and not hosted.is_hosted("qwen3-coder-next", local_names=local)
    assert not hosted.is_hosted("qwen3.5-9b", local_names=local) and not hosted.is_hosted("qwen3.5-plus-ultra")
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    remote = resolve("qwen3-coder-next", backend="remote")
    assert remote.format == "remote" and remote.endpoint.model == "qwen3-coder-next"
    assert resolve("qwen3-max", backend="auto").hints["context"] == 262144
