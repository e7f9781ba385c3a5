"""`qwen eval`: what a model (a quant) scores, measured the way the field measures it."""
