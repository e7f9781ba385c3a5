"""`qwen serve --engine vllm|sglang`: a distributed engine as a child process, sized for the model and
the machine, with qwencli's own server in front (or `--direct`).

`facts.py` (what we know of a model), `plan.py` (model + machine + overrides → `EnginePlan`, pure),
`vllm.py` / `sglang.py` (each engine's flags), `child.py` (start, wait, stop, crash report),
`relay.py` (the front door relaying /v1/* to the engine), `run.py` (the whole `serve --engine`)."""
