"""Metrics: watched, not optimized. Any reward is a metric; F1Score and Accuracy are built in."""

from __future__ import annotations

import re
from collections import Counter

from promptrl.rewards import ExactMatch, Reward

__all__ = ["Metric", "F1Score", "Accuracy", "RewardMetric"]

Metric = Reward  # a metric scores one prediction exactly like a reward; fit/evaluate average it


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 18.0 is the token "18", not "18" and "0"
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    return str(value)


def _tokens(data: dict) -> list[str]:
    text = " ".join(_text(v) for v in data.values())
    return re.findall(r"\d+(?:\.\d+)?|\w+", text.lower())  # a decimal number is one token


class F1Score(Reward):
    """Token-level F1 between target and prediction (lower-cased word tokens), as in SQuAD."""

    default_name = "f1_score"

    async def score(self, y_true: dict, y_pred: dict) -> float:
        truth, pred = _tokens(y_true), _tokens(y_pred)
        if not truth and not pred:
            return 1.0
        common = sum((Counter(truth) & Counter(pred)).values())
        if common == 0:
            return 0.0
        precision, recall = common / len(pred), common / len(truth)
        return 2 * precision * recall / (precision + recall)


class Accuracy(ExactMatch):
    """Share of predictions whose kept fields all match the target."""

    default_name = "accuracy"


class RewardMetric(Reward):
    """Watch any reward as a metric under its own name."""

    def __init__(self, reward: Reward, name: str | None = None):
        super().__init__(reward.in_mask, reward.out_mask, name or reward.name)
        self.reward = reward
        self.uses_input = getattr(reward, "uses_input", False)  # an LM judge reads the example's input

    async def scored(self, y_true, y_pred, **kwargs):
        return await self.reward.scored(y_true, y_pred, **kwargs)
