"""`qwen eval`'s measurements, over the logits a backend gives: perplexity and KL divergence as
llama.cpp's `llama-perplexity` computes them (`chunks.py`, `perplexity.py`, `kld.py`, `kld_file.py`),
and `qwen bench`'s timings (`speed.py`). numpy is imported by the modules that compute, never here."""
