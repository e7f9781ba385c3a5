"""Reranking on a rank-pooled llama.cpp load (`LLAMA_POOLING_TYPE_RANK`): one relevance score per
(query, document), as llama-server computes it.

The prompt is the one the GGUF carries as `tokenizer.chat_template.rerank` — what llama.cpp's
converter writes for Qwen3-Reranker (its instruction, `<Query>: {query}`, `<Document>: {document}`,
then an assistant turn with an empty think block) — with the two placeholders replaced, tokenised
with special tokens parsed and no BOS added (llama-server's `format_prompt_rerank`). llama.cpp pools
the last token through the `cls_out` head (the "yes"/"no" rows of the lm_head) and, for Qwen3,
softmaxes the pair, so the score is P("yes") in [0, 1].

A rank-pooled file without that template (BERT-style cross-encoders) is refused with a clear
error rather than scored with a prompt nobody checked.
"""

from __future__ import annotations

from typing import Any

from ..errors import QwenError

RERANK_TEMPLATE_KEY = "tokenizer.chat_template.rerank"


class CannotRerank(QwenError):
    http_status = 400
    error_type = "invalid_request_error"


class Stopped(Exception):
    """The request went away between two documents."""


def rerank_prompt(template: str, query: str, document: str) -> str:
    # Plain replacement, as llama-server does it: the template is not Jinja.
    return template.replace("{query}", query).replace("{document}", document)


def score(
    llama: Any, template: str, query: str, document: str, index: int, *, context_length: int
) -> tuple[float, int]:
    """P("yes") for `document` (the `index`-th, for errors), and the tokens read: one decode.
    `llama` is a llama_cpp.Llama loaded with embedding=True and rank pooling; the caller loops
    over the documents, so a request can stop (or give way to others) between two of them."""
    import llama_cpp

    ids = llama.tokenize(rerank_prompt(template, query, document).encode(), add_bos=False, special=True)
    if len(ids) > context_length:
        raise CannotRerank(
            f"documents[{index}] with the query takes {len(ids)} tokens; this load holds {context_length}",
            param="documents",
        )
    llama._ctx.kv_cache_clear()
    llama._batch.reset()
    llama._batch.add_sequence(ids, 0, True)
    try:
        llama._ctx.decode(llama._batch)
        return float(llama_cpp.llama_get_embeddings_seq(llama._ctx.ctx, 0)[0]), len(ids)
    finally:
        llama._ctx.kv_cache_clear()
        llama._batch.reset()
