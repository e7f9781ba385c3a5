"""Which files of a repo make up one GGUF model, for every way Qwen publishes them."""

from __future__ import annotations

import pytest

from qwencli.errors import ModelNotFound, UnsupportedModel
from qwencli.models.select import (
    RepoFile,
    available_quants,
    choose,
    default_quant,
    gguf_models,
    projector_for,
    quant_of,
    sidecar_kind,
)


def listing(*paths: str) -> list[RepoFile]:
    return [RepoFile(p, 1000 + i) for i, p in enumerate(paths)]


def chosen(files, quant) -> tuple[str, list[str]]:
    choice = choose(files, quant, repo="o/r")
    return choice.layout, [f.path for f in choice.files]


@pytest.mark.parametrize("path,quant", [
    ("qwen2.5-7b-instruct-q4_k_m.gguf", "q4_k_m"),
    ("Qwen2.5-7B-Instruct-Q4_K_M.gguf", "q4_k_m"),
    ("qwen1_5-7b-chat-q5_k_m.gguf", "q5_k_m"),
    ("Qwen3-8B-IQ4_XS.gguf", "iq4_xs"),
    ("qwq-32b-fp16-00001-of-00017.gguf", "fp16"),
    ("Q4_K_M/Qwen3-235B-A22B-Q4_K_M-00001-of-00005.gguf", "q4_k_m"),
    ("qwen2-7b-instruct-bf16.gguf", "bf16"),
    ("model.gguf", None),
    # community repos: unsloth's dynamic quants, bartowski's Qwen_ prefix, per-quant folders
    ("Qwen3.8-27B-UD-Q4_K_XL.gguf", "ud_q4_k_xl"),
    ("UD-Q2_K_XL/Qwen3.8-Flash-Next-UD-Q2_K_XL-00001-of-00003.gguf", "ud_q2_k_xl"),
    ("Qwen_Qwen3.5-4B-Q4_K_M.gguf", "q4_k_m"),
    ("BF16/Qwen3.8-27B-BF16-00001-of-00002.gguf", "bf16"),
    ("qwen3-coder-30b-a3b-instruct-q8_0.gguf", "q8_0"),
    # a quant is a whole token: "q4_k" is not inside "xq4_k" nor is "q4_0" inside "q4_0x"
    ("modelq4_k.gguf", None),
])
def test_quant_is_read_from_the_file_name(path, quant):
    assert quant_of(path) == quant


def test_quant_matches_case_insensitively_as_a_whole_token():
    files = listing("m-Q4_K.gguf", "m-Q4_K_M.gguf", "m-q4_k_s.gguf")
    assert chosen(files, "Q4_K_M") == ("single", ["m-Q4_K_M.gguf"])
    assert chosen(files, "q4_k") == ("single", ["m-Q4_K.gguf"])  # not q4_k_m, not q4_k_s


def test_a_plain_file_is_preferred_over_a_shard_set_of_the_same_quant():
    files = listing("m-q8_0-00002-of-00002.gguf", "m-q8_0.gguf", "m-q8_0-00001-of-00002.gguf")
    assert chosen(files, "q8_0") == ("single", ["m-q8_0.gguf"])


def test_side_by_side_shards_come_in_order():
    files = listing("m-q4_k_m-00003-of-00003.gguf", "m-q4_k_m-00001-of-00003.gguf", "m-q4_k_m-00002-of-00003.gguf",
                    "m-q8_0.gguf", "README.md")
    assert chosen(files, "q4_k_m") == ("shards", [f"m-q4_k_m-0000{i}-of-00003.gguf" for i in (1, 2, 3)])


def test_shards_in_a_per_quant_folder():
    files = listing("Q4_K_M/Qwen3-235B-A22B-Q4_K_M-00002-of-00002.gguf",
                    "Q4_K_M/Qwen3-235B-A22B-Q4_K_M-00001-of-00002.gguf",
                    "Q8_0/Qwen3-235B-A22B-Q8_0-00001-of-00001.gguf")
    layout, paths = chosen(files, "q4_k_m")
    assert layout == "shards" and paths == ["Q4_K_M/Qwen3-235B-A22B-Q4_K_M-00001-of-00002.gguf",
                                            "Q4_K_M/Qwen3-235B-A22B-Q4_K_M-00002-of-00002.gguf"]
    assert chosen(files, "Q8_0")[1] == ["Q8_0/Qwen3-235B-A22B-Q8_0-00001-of-00001.gguf"]


def test_qwen2_72b_split_infix_is_a_shard_set():
    files = listing("qwen2-72b-instruct-q4_k_m-split-00001-of-00002.gguf",
                    "qwen2-72b-instruct-q4_k_m-split-00002-of-00002.gguf")
    assert chosen(files, "q4_k_m")[0] == "shards"


def test_an_incomplete_shard_set_is_rejected_with_the_reason():
    files = listing("m-q4_k_m-00001-of-00003.gguf", "m-q4_k_m-00003-of-00003.gguf", "m-q8_0.gguf")
    assert [m.quant for m in gguf_models(files)] == ["q8_0"]
    with pytest.raises(ModelNotFound) as caught:
        choose(files, "q4_k_m", repo="o/r")
    assert "incomplete" in caught.value.message and "q8_0" in caught.value.hint


def test_qwen15_72b_byte_split_parts_are_one_model_in_letter_order():
    files = listing("qwen1_5-72b-chat-q4_k_m.gguf.b", "qwen1_5-72b-chat-q4_k_m.gguf.a",
                    "qwen1_5-72b-chat-q8_0.gguf.a", "qwen1_5-72b-chat-q8_0.gguf.c", "qwen1_5-72b-chat-q8_0.gguf.b",
                    "qwen1_5-72b-chat-q2_k.gguf")
    choice = choose(files, "q8_0", repo="o/r")
    assert choice.layout == "byte-split" and choice.entry_path == "qwen1_5-72b-chat-q8_0.gguf"
    assert [f.path[-1] for f in choice.files] == ["a", "b", "c"]
    assert choice.size == sum(f.size for f in choice.files)
    assert chosen(files, "q4_k_m")[1] == ["qwen1_5-72b-chat-q4_k_m.gguf.a", "qwen1_5-72b-chat-q4_k_m.gguf.b"]


def test_a_byte_split_set_with_a_missing_part_is_not_a_model():
    files = listing("m-q8_0.gguf.a", "m-q8_0.gguf.c", "m-q2_k.gguf")
    assert [m.quant for m in gguf_models(files)] == ["q2_k"]


def test_nonexistent_quant_lists_the_quants_that_exist_in_size_order():
    files = listing("m-q8_0.gguf", "m-q2_k.gguf", "m-Q4_K_M.gguf", "m-fp16.gguf", "mmproj-m-f16.gguf")
    with pytest.raises(ModelNotFound) as caught:
        choose(files, "q5_k_m", repo="o/r")
    assert "no q5_k_m GGUF" in caught.value.message
    assert caught.value.hint == "available quants: q2_k, q4_k_m, q8_0, fp16"  # the projector is not a model


def test_default_quant_follows_the_catalog_then_a_sensible_fallback():
    models = gguf_models(listing("m-q8_0.gguf", "m-q4_k_m.gguf", "m-q2_k.gguf"))
    assert default_quant(models, "q8_0") == "q8_0"
    assert default_quant(models, "q5_k_m") == "q4_k_m"  # the catalog's default is gone: the usual one
    assert default_quant(gguf_models(listing("m-q3_k_l.gguf", "m-q6_k.gguf")), None) == "q6_k"
    assert available_quants(models) == ["q2_k", "q4_k_m", "q8_0"]


def test_a_safetensors_repo_points_to_the_torch_backend():
    with pytest.raises(UnsupportedModel, match="safetensors"):
        choose(listing("model.safetensors", "config.json"), "q4_k_m", repo="o/r")
    with pytest.raises(ModelNotFound, match="no GGUF"):
        choose(listing("README.md"), "q4_k_m", repo="o/r")


# -- community layouts (unsloth, bartowski, lmstudio-community) --------------------------------------

UNSLOTH_38 = (
    "Qwen3.8-27B-UD-Q4_K_XL.gguf", "Qwen3.8-27B-Q4_K_M.gguf", "Qwen3.8-27B-Q8_0.gguf",
    "BF16/Qwen3.8-27B-BF16-00002-of-00002.gguf", "BF16/Qwen3.8-27B-BF16-00001-of-00002.gguf",
    "mmproj-BF16.gguf", "mmproj-F16.gguf", "MTP/mtp-Qwen3.8-27B-Q4_0.gguf", "imatrix_unsloth.gguf_file",
    "README.md", "config.json",
)


def test_unsloth_layout_dynamic_quants_folders_and_sidecars():
    files = listing(*UNSLOTH_38)
    assert available_quants(gguf_models(files)) == ["q4_k_m", "q8_0", "bf16", "ud_q4_k_xl"]
    assert chosen(files, "UD-Q4_K_XL") == ("single", ["Qwen3.8-27B-UD-Q4_K_XL.gguf"])
    assert chosen(files, "ud_q4_k_xl") == ("single", ["Qwen3.8-27B-UD-Q4_K_XL.gguf"])
    assert chosen(files, "q4_k_m") == ("single", ["Qwen3.8-27B-Q4_K_M.gguf"])  # not the UD file
    assert chosen(files, "bf16") == ("shards", ["BF16/Qwen3.8-27B-BF16-00001-of-00002.gguf",
                                                "BF16/Qwen3.8-27B-BF16-00002-of-00002.gguf"])
    # The MTP draft is a Q4_0 GGUF, but never the model's Q4_0.
    with pytest.raises(ModelNotFound):
        choose(files, "q4_0", repo="unsloth/Qwen3.8-27B-GGUF")


def test_unsloth_ud_shard_sets_in_per_quant_folders():
    files = listing(*(f"UD-Q2_K_XL/Qwen3.8-Flash-Next-UD-Q2_K_XL-0000{i}-of-00003.gguf" for i in (3, 1, 2)),
                    "MTP/mtp-Qwen3.8-Flash-Next-Q8_0.gguf", "mmproj-F16.gguf")
    layout, paths = chosen(files, "UD-Q2_K_XL")
    assert layout == "shards" and [p[-22:] for p in paths] == [
        f"XL-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert default_quant(gguf_models(files), "q4_k_m") == "ud_q2_k_xl"  # all there is


def test_default_quant_falls_back_to_the_dynamic_quant_of_the_same_size():
    models = gguf_models(listing("m-UD-Q4_K_XL.gguf", "m-Q8_0.gguf", "m-UD-Q2_K_XL.gguf"))
    assert default_quant(models, "q4_k_m") == "ud_q4_k_xl"


@pytest.mark.parametrize("path,kind", [
    ("mmproj-BF16.gguf", "mmproj"),
    ("mmproj-Qwen_Qwen3.5-9B-f16.gguf", "mmproj"),
    ("MTP/mtp-Qwen3.8-27B-Q4_0.gguf", "mtp"),
    ("mtp-Qwen3.6-27B-Q8_0.gguf", "mtp"),
    ("imatrix.dat", "imatrix"),
    ("Qwen3.5-0.8B-Q8_0.gguf", None),
    ("Q4_K_M/m-Q4_K_M-00001-of-00002.gguf", None),
])
def test_sidecars_are_told_apart_from_weights(path, kind):
    assert sidecar_kind(path) == kind


@pytest.mark.parametrize("files,model,expected", [
    # Qwen's own: one model, its own F16 projector.
    (["Qwen3VL-8B-Instruct-Q4_K_M.gguf", "Qwen3VL-8B-Instruct-Q8_0.gguf", "mmproj-Qwen3VL-8B-Instruct-F16.gguf"],
     "Qwen3VL-8B-Instruct-Q4_K_M.gguf", "mmproj-Qwen3VL-8B-Instruct-F16.gguf"),
    # unsloth: F16 before BF16 before F32, whatever their order or size.
    (["Qwen3.6-27B-Q4_K_M.gguf", "mmproj-F32.gguf", "mmproj-BF16.gguf", "mmproj-F16.gguf"],
     "Qwen3.6-27B-Q4_K_M.gguf", "mmproj-F16.gguf"),
    (["Qwen3.6-27B-Q4_K_M.gguf", "mmproj-F32.gguf", "mmproj-BF16.gguf"], "Qwen3.6-27B-Q4_K_M.gguf", "mmproj-BF16.gguf"),
    # A quantized projector only when there is nothing else.
    (["m-Q4_K_M.gguf", "mmproj-m-Q8_0.gguf"], "m-Q4_K_M.gguf", "mmproj-m-Q8_0.gguf"),
    # A repo with two models' projectors: the one named after the model wins over a better precision.
    (["Qwen3VL-8B-Instruct-Q4_K_M.gguf", "mmproj-Qwen3VL-8B-Instruct-Q8_0.gguf", "mmproj-Qwen3VL-2B-F16.gguf"],
     "Qwen3VL-8B-Instruct-Q4_K_M.gguf", "mmproj-Qwen3VL-8B-Instruct-Q8_0.gguf"),
    # Both named after the model: the quant in a name is not part of the match (q8_0 shares "q" with q4_k_m).
    (["Qwen3VL-2B-Instruct-Q4_K_M.gguf", "mmproj-Qwen3VL-2B-Instruct-Q8_0.gguf", "mmproj-Qwen3VL-2B-Instruct-F32.gguf"],
     "Qwen3VL-2B-Instruct-Q4_K_M.gguf", "mmproj-Qwen3VL-2B-Instruct-F32.gguf"),
    # Shards in a folder take the projector at the top; no projector at all is None.
    (["BF16/m-BF16-00001-of-00002.gguf", "BF16/m-BF16-00002-of-00002.gguf", "mmproj-BF16.gguf"],
     "BF16/m-BF16-00001-of-00002.gguf", "mmproj-BF16.gguf"),
    (["m-Q4_K_M.gguf", "MTP/mtp-m-Q4_0.gguf", "imatrix.dat"], "m-Q4_K_M.gguf", None),
])
def test_the_projector_of_a_model_is_named_after_it_then_f16_bf16_f32(files, model, expected):
    repo = listing(*files)
    choice = next(m for m in gguf_models(repo) if m.entry_path == model)
    found = projector_for(repo, choice)
    assert (found.path if found else None) == expected
    assert all(m.entry_path != expected for m in gguf_models(repo))  # a projector is never a model
