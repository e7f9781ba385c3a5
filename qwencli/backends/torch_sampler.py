"""Sampling the next token from one row of logits, on the torch backend (llama.cpp brings its own)."""

from __future__ import annotations

import time

import torch

from ..chat import GenerationOptions
from .local import PENALTY_WINDOW


class Sampler:
    """Sampling from one row of logits: penalties, temperature, top-k, min-p, top-p."""

    def __init__(self, options: GenerationOptions, device: str):
        self.temperature = options.temperature or 0.0
        self.top_k = options.top_k or 0
        self.top_p = 1.0 if options.top_p is None else options.top_p
        self.min_p = options.min_p or 0.0
        self.repeat = options.repeat_penalty or 1.0
        self.presence = options.presence_penalty or 0.0
        self.frequency = options.frequency_penalty or 0.0
        self.penalised = self.repeat != 1.0 or self.presence or self.frequency
        self.generator = None
        if self.temperature > 0:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(options.seed if options.seed is not None else int(time.time_ns() & 0xFFFFFFFF))

    def __call__(self, logits: torch.Tensor, recent: list[int]) -> int:
        if self.penalised and recent:
            logits = self._penalise(logits.float(), recent[-PENALTY_WINDOW:])
        if self.temperature <= 0:
            return int(torch.argmax(logits))
        logits = logits.float() / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            values, ids = torch.topk(logits, self.top_k)
        else:
            values, ids = torch.sort(logits, descending=True)
        probs = torch.softmax(values, dim=-1)
        keep = torch.ones_like(probs, dtype=torch.bool)
        if self.min_p > 0:
            keep &= probs >= probs[0] * self.min_p
        if self.top_p < 1.0:
            keep &= (torch.cumsum(probs, dim=-1) - probs) < self.top_p
        keep[0] = True
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        choice = torch.multinomial(probs, 1, generator=self.generator)
        return int(ids[choice])

    def _penalise(self, logits: torch.Tensor, recent: list[int]) -> torch.Tensor:
        ids, counts = torch.tensor(recent, device=logits.device).unique(return_counts=True)
        picked = logits[ids]
        if self.repeat != 1.0:
            picked = torch.where(picked > 0, picked / self.repeat, picked * self.repeat)
        picked = picked - self.presence - self.frequency * counts.to(picked.dtype)
        logits = logits.clone()
        logits[ids] = picked
        return logits
