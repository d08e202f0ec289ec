"""Guesses an MoE block's experts from its router, for prefetch and the router-score policy."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


class RouterGuess:
    """An MoE block's router. On the previous layer's input it guesses this block's experts
    (prefetch); on its own input its softmax scores every expert (RouterScorePolicy).
    The router is found by shape, not by name (gate, router, ...: every architecture names
    it its own way): the block's first [num_experts, hidden] weight. Its raw logits' top-k
    is the guess (score functions and bias corrections are monotone or small)."""

    def __init__(self, router: nn.Module, top_k: int) -> None:
        self._router = router
        self._plain = not isinstance(router, (nn.Linear, nn.QuantizedLinear))
        self._top_k = top_k
        width = router.weight.shape[1]  # quantized: uint32 words of `bits`-bit values
        self.input_size = width * 32 // router.bits if isinstance(router, nn.QuantizedLinear) else width

    @classmethod
    def find(cls, scopes: list[nn.Module], num_experts: int, input_size: int, top_k: int) -> RouterGuess | None:
        """The first router in the nearest scope (the experts' parent, then its parents up
        to the decoder layer) that maps the experts' input to one logit per expert."""
        for scope in scopes:
            for _, module in scope.named_modules():
                weight = module.get("weight")
                if isinstance(weight, mx.array) and weight.ndim == 2 and weight.shape[0] == num_experts:
                    guess = cls(module, top_k)
                    if guess.input_size == input_size:
                        return guess
        return None

    def logits(self, x: mx.array) -> mx.array:
        return x @ self._router.weight.T if self._plain else self._router(x)

    def __call__(self, x: mx.array) -> mx.array:
        return mx.argpartition(-self.logits(x), kth=self._top_k - 1, axis=-1)[..., : self._top_k]

    def probs(self, x: mx.array) -> mx.array:
        """Softmax of the raw logits over every expert: a score for the cache policy, whatever
        the model's own scoring function (softmax, sigmoid, bias-corrected)."""
        return mx.softmax(self.logits(x).astype(mx.float32), axis=-1)
