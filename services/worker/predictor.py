"""The prediction behind the worker: a small, honest baseline behind an interface.

The point of the worker is the delivery protocol, not the model: :class:`RecencyWeightedMean`
predicts a player's next value as the exponentially recency-weighted mean of the recent values
the work item carries (most recent last). Players who cannot be predicted (injured, out) and
items without usable values are *permanent* failures: retrying cannot fix them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["PermanentPredictionError", "Predictor", "RecencyWeightedMean", "UNPREDICTABLE_STATUSES"]

#: Player statuses that make a prediction meaningless.
UNPREDICTABLE_STATUSES = frozenset({"OUT", "INJURED", "SUSPENDED", "INACTIVE"})


class PermanentPredictionError(ValueError):
    """This item can never be predicted; acknowledge it and report a failed completion."""


class Predictor(Protocol):
    name: str

    def predict(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The prediction for one work item; raises PermanentPredictionError."""
        ...


@dataclass(frozen=True)
class RecencyWeightedMean:
    """Mean of ``recent_values`` with weights halving every ``half_life`` games back."""

    half_life: float = 3.0
    name: str = "recency-weighted-mean"

    def predict(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        status = str(payload.get("status") or "ACTIVE").upper()
        if status in UNPREDICTABLE_STATUSES:
            raise PermanentPredictionError(f"player status {status}: not predictable")
        values = payload.get("recent_values")
        if not isinstance(values, list) or not values:
            raise PermanentPredictionError("no recent_values to predict from")
        numbers: list[float] = []
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise PermanentPredictionError(f"recent_values holds a non-number: {v!r}")
            numbers.append(float(v))
        decay = 0.5 ** (1.0 / self.half_life)
        n = len(numbers)
        weights = [decay ** (n - 1 - i) for i in range(n)]
        value = sum(w * x for w, x in zip(weights, numbers, strict=True)) / sum(weights)
        return {"value": round(value, 4), "model": self.name, "n_values": n}
