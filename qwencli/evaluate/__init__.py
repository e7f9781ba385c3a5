"""`qwen eval`'s measurements, over the logits a backend gives: perplexity and KL divergence as
llama.cpp's `llama-perplexity` computes them (`chunks.py`, `perplexity.py`, `kld.py`, `kld_file.py`),
`qwen bench`'s timings (`speed.py`), and multiple choice scored as lm-eval-harness scores it
(`scoring.py`, `multiple_choice.py`, `datasets.py`, `server_scoring.py`). numpy is imported by the
modules that compute, never here."""
