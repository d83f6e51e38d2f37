"""Rewards: score one prediction against its target, in [0, 1].

Every reward takes `in_mask` (keep only these fields) and `out_mask` (drop these fields),
applied to both the target and the prediction. A failed prediction (None) scores 0.

A reward also explains its score in a line of text (`scored` returns both): ExactMatch says what
was expected and what came instead, an LM judge gives its critique. Optimizers that rewrite
instructions (TextGrad, GEPA) show that feedback to the optimizer LM.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NamedTuple

import pydantic

__all__ = ["Reward", "ExactMatch", "CosineSimilarity", "Scored", "apply_mask"]


def _as_dict(value) -> dict:
    if value is None:
        return {}
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump()
    return dict(value)


def apply_mask(value, in_mask: list[str] | None = None, out_mask: list[str] | None = None) -> dict:
    data = _as_dict(value)
    if in_mask:
        data = {k: v for k, v in data.items() if k in in_mask}
    if out_mask:
        data = {k: v for k, v in data.items() if k not in out_mask}
    return data


_NUMBER = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$|^[-+]?\.\d+$")


def as_number(value: Any) -> float | None:
    """18, 18.0, "18", "1,234.5" -> float; anything else -> None. Booleans are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lstrip("$")
        if _NUMBER.match(text):
            return float(text.replace(",", ""))
    return None


def values_match(expected: Any, predicted: Any, case_sensitive: bool = True) -> bool:
    """Equality that treats numbers as numbers (18.0 == 18 == "18") and trims strings."""
    if isinstance(expected, bool) or isinstance(predicted, bool):
        return type(expected) is type(predicted) and expected == predicted
    a, b = as_number(expected), as_number(predicted)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, str) and isinstance(predicted, str):
        a_text, b_text = expected.strip(), predicted.strip()
        return a_text == b_text if case_sensitive else a_text.lower() == b_text.lower()
    if isinstance(expected, list) and isinstance(predicted, list):
        return len(expected) == len(predicted) and all(
            values_match(x, y, case_sensitive) for x, y in zip(expected, predicted)
        )
    return expected == predicted


class Scored(NamedTuple):
    """A reward's score in [0, 1] and its one-line explanation."""

    score: float
    feedback: str


NO_OUTPUT = "no valid output was produced"


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def mismatch_feedback(y_true: dict, y_pred: dict, case_sensitive: bool = True) -> str:
    """`answer: expected "(A)", got "(B)"` for every kept field that differs; "correct" if none."""
    wrong = [f"{k}: expected {_short(v)}, got " + (_short(y_pred[k]) if k in y_pred else "nothing")
             for k, v in y_true.items() if k not in y_pred or not values_match(v, y_pred[k], case_sensitive)]
    return "; ".join(wrong) if wrong else "correct"


class Reward:
    """Base class: subclasses implement `score(y_true: dict, y_pred: dict) -> float`, and may
    override `feedback` (a line explaining the score) or `scored` (both from one computation)."""

    default_name = "reward"

    def __init__(self, in_mask: list[str] | None = None, out_mask: list[str] | None = None, name: str | None = None):
        self.in_mask = list(in_mask) if in_mask else None
        self.out_mask = list(out_mask) if out_mask else None
        self.name = name or self.default_name

    async def __call__(self, y_true, y_pred) -> float:
        return (await self.scored(y_true, y_pred)).score

    async def scored(self, y_true, y_pred) -> Scored:
        """The score and its feedback for one prediction (None: a failed prediction, 0)."""
        if y_pred is None:
            return Scored(0.0, NO_OUTPUT)
        true, pred = apply_mask(y_true, self.in_mask, self.out_mask), apply_mask(y_pred, self.in_mask, self.out_mask)
        value = float(await self.score(true, pred))
        return Scored(value, self.feedback(true, pred, value))

    async def score(self, y_true: dict, y_pred: dict) -> float:
        raise NotImplementedError

    def feedback(self, y_true: dict, y_pred: dict, score: float) -> str:
        """One line on why: the fields that differ from the target, with the score when partial."""
        if score >= 1.0:
            return "correct"
        return f"score {score:.2f}; {mismatch_feedback(y_true, y_pred)}"


class ExactMatch(Reward):
    """1.0 if every kept field matches (numbers compared as numbers), else 0.0."""

    default_name = "exact_match"

    def __init__(self, in_mask=None, out_mask=None, case_sensitive: bool = True, name: str | None = None):
        super().__init__(in_mask, out_mask, name)
        self.case_sensitive = case_sensitive

    async def score(self, y_true: dict, y_pred: dict) -> float:
        if not y_true:
            return 0.0
        return float(all(k in y_pred and values_match(v, y_pred[k], self.case_sensitive) for k, v in y_true.items()))

    def feedback(self, y_true: dict, y_pred: dict, score: float) -> str:
        return mismatch_feedback(y_true, y_pred, self.case_sensitive) if y_true else "nothing to compare (no kept fields)"


def _as_text(data: dict) -> str:
    """The text embedded for cosine similarity: a single field's value as is, else JSON."""
    if len(data) == 1:
        value = next(iter(data.values()))
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


class CosineSimilarity(Reward):
    """Cosine similarity of the embeddings of target and prediction, clipped to [0, 1].

    `embedding_model` is any litellm embedding model (`openai/text-embedding-3-small`,
    `ollama/nomic-embed-text`, ...), `local/ngrams` (default: hashed character trigrams - offline,
    instant, lexical: "positive" vs "negative" scores low, but synonyms do too) or
    `local/smollm2-135m` (mean-pooled states of the embedded model; its semantics are weak).
    """

    default_name = "cosine_similarity"

    def __init__(self, embedding_model="local/ngrams", in_mask=None, out_mask=None, name: str | None = None,
                 **embedding_kwargs):
        super().__init__(in_mask, out_mask, name)
        from promptrl.embeddings import EmbeddingModel

        self.embedding_model = (
            embedding_model if isinstance(embedding_model, EmbeddingModel)
            else EmbeddingModel(embedding_model, **embedding_kwargs)
        )

    async def score(self, y_true: dict, y_pred: dict) -> float:
        a_text, b_text = _as_text(y_true), _as_text(y_pred)
        if a_text == b_text:
            return 1.0
        a, b = await self.embedding_model.embed([a_text, b_text])
        norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        if norm == 0:
            return 0.0
        return max(0.0, min(1.0, sum(x * y for x, y in zip(a, b)) / norm))
