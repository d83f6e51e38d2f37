"""Rewards: score one prediction against its target, in [0, 1].

Every reward takes `in_mask` (keep only these fields) and `out_mask` (drop these fields),
applied to both the target and the prediction. A failed prediction (None) scores 0.

A reward also explains its score in a line of text (`scored` returns both): ExactMatch says what
was expected and what came instead, an LM judge gives its critique. Optimizers that rewrite
instructions (TextGrad, GEPA) show that feedback to the optimizer LM.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any, NamedTuple

import pydantic

from promptrl.errors import UserError

__all__ = ["Reward", "ExactMatch", "CosineSimilarity", "LMAsJudge", "Scored", "Verdict", "apply_mask"]


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
    if type(expected) is str and type(predicted) is str and expected.strip() == predicted.strip():
        return True  # the common case, decided without the number parsing below
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


def mismatched_fields(y_true: dict, y_pred: dict, case_sensitive: bool = True) -> list[str]:
    """The kept fields whose predicted value differs from the target (or is missing)."""
    return [k for k, v in y_true.items() if k not in y_pred or not values_match(v, y_pred[k], case_sensitive)]


def mismatch_feedback(y_true: dict, y_pred: dict, case_sensitive: bool = True,
                      wrong: list[str] | None = None) -> str:
    """`answer: expected "(A)", got "(B)"` for every kept field that differs (`wrong`, when already
    known); "correct" if none."""
    wrong = mismatched_fields(y_true, y_pred, case_sensitive) if wrong is None else wrong
    return "; ".join(f"{k}: expected {_short(y_true[k])}, got " + (_short(y_pred[k]) if k in y_pred else "nothing")
                     for k in wrong) or "correct"


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
        return await self._scored(true, pred)

    async def _scored(self, true: dict, pred: dict) -> Scored:
        """Score and feedback of the kept fields (a subclass may get both from one computation)."""
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
        return float(bool(y_true) and not mismatched_fields(y_true, y_pred, self.case_sensitive))

    def feedback(self, y_true: dict, y_pred: dict, score: float) -> str:
        return mismatch_feedback(y_true, y_pred, self.case_sensitive) if y_true else "nothing to compare (no kept fields)"

    async def _scored(self, true: dict, pred: dict) -> Scored:
        """Score and feedback from one comparison of the fields (every prediction is scored: keep it cheap)."""
        if type(self).score is not ExactMatch.score or type(self).feedback is not ExactMatch.feedback:
            return await super()._scored(true, pred)  # a subclass with a score or feedback of its own
        if not true:
            return Scored(0.0, "nothing to compare (no kept fields)")
        wrong = mismatched_fields(true, pred, self.case_sensitive)
        return Scored(0.0 if wrong else 1.0, mismatch_feedback(true, pred, wrong=wrong))


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


class Verdict(pydantic.BaseModel):
    """An LM judge's answer: the critique comes first, so the judge reasons before it scores."""

    model_config = pydantic.ConfigDict(extra="forbid")

    critique: str = pydantic.Field(description="what the prediction gets right and wrong against the criteria "
                                               "and the expected output, in a few sentences")
    score: int = pydantic.Field(description="the score, an integer on the scale given in the instructions")


JUDGE_INSTRUCTIONS = """You are a strict, impartial judge. Score how well a prediction meets the criteria below, \
taking the expected output as the reference answer.

Criteria: {criteria}

Reply with a JSON object: first "critique", a few sentences on what the prediction gets right and what is \
wrong or missing, then "score", an integer from {low} ({low_meaning}) to {high} (fully meets the criteria)."""


class LMAsJudge(Reward):
    """An LM scores the prediction against `criteria`, with the target as the reference answer.

    The judge (`language_model`) answers a `Verdict`: a critique (the feedback optimizers see),
    then an integer score on `scale` - `5` means 1..5, `10` means 1..10, `[0, 1]` a pass/fail
    verdict - mapped linearly to [0, 1] (1..5 -> 0, .25, .5, .75, 1); a score off the scale is
    clipped and the clipping noted in the feedback. The judge sees the kept fields of the target and
    of the prediction and, with `include_input`, the example's input (the trainer passes it as `x`).

    Each (criteria, target, prediction, input) is judged once per judge instance (in memory);
    a run's reply cache also replays identical judgements on `--resume`. With `skip_exact`, a
    prediction that matches the target on every kept field scores 1.0 without a call. A failed
    judge call raises PredictionError (the trainer scores the prediction 0 and records the error,
    or leaves it out when the judge's provider gave no answer). Calls are accounted under the
    usage role "judge". In a config, `language_model: null` is filled in by the recipe (the
    optimizer LM, else a copy of the program's LM at temperature 0); in Python pass one.
    """

    default_name = "lm_judge"

    def __init__(self, criteria: str, language_model=None, scale: int | list[int] = 5, in_mask=None, out_mask=None,
                 name: str | None = None, include_input: bool = True, skip_exact: bool = True, seed: int | None = 0):
        super().__init__(in_mask, out_mask, name)
        if not isinstance(criteria, str) or not criteria.strip():
            raise UserError("LMAsJudge: criteria must be a non-empty text saying what a good prediction is, "
                            'e.g. reward.criteria="same answer as the expected output"')
        self.criteria = criteria.strip()
        self.low, self.high = self._scale(scale)
        if isinstance(language_model, str):  # a model name: that model with the judge's settings
            from promptrl.language_model import LanguageModel

            language_model = LanguageModel(model=language_model, temperature=0.0)
        self.language_model = language_model
        self.include_input = include_input
        self.uses_input = include_input  # the trainer passes the example's input as `x`
        self.skip_exact = skip_exact
        self.seed = seed
        self.judgements: dict[str, Scored] = {}  # stable JSON of what was judged -> its verdict
        self._pending: dict[str, Any] = {}  # the same judgement in flight: asked once, awaited by all

    @staticmethod
    def _scale(scale) -> tuple[int, int]:
        if isinstance(scale, int) and not isinstance(scale, bool) and scale >= 2:
            return 1, scale
        if (isinstance(scale, (list, tuple)) and len(scale) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in scale) and scale[0] < scale[1]):
            return int(scale[0]), int(scale[1])
        raise UserError(f"LMAsJudge: scale={scale!r} is not valid; give the top score (5 means 1..5) "
                        "or [lowest, highest], e.g. [0, 1] for pass/fail")

    def messages(self, y_true: dict, y_pred: dict, x: Any = None) -> list[dict]:
        """The judge's prompt for one (masked) target and prediction, and the input if it is shown."""
        low_meaning = "fails the criteria" if self.high - self.low == 1 else "does not meet the criteria at all"
        system = JUDGE_INSTRUCTIONS.format(criteria=self.criteria, low=self.low, high=self.high,
                                           low_meaning=low_meaning)
        case = {}
        if self.include_input and x is not None:
            case["input"] = _as_dict(x)
        case.update({"expected_output": y_true, "prediction": y_pred})
        return [{"role": "system", "content": system},
                {"role": "user", "content": json.dumps(case, ensure_ascii=False, default=str)}]

    async def scored(self, y_true, y_pred, x=None) -> Scored:
        if y_pred is None:
            return Scored(0.0, NO_OUTPUT)
        true, pred = apply_mask(y_true, self.in_mask, self.out_mask), apply_mask(y_pred, self.in_mask, self.out_mask)
        if self.skip_exact and true and not mismatched_fields(true, pred):
            return Scored(1.0, "matches the target")
        shown = x if self.include_input else None
        key = json.dumps([self.criteria, true, pred, _as_dict(shown) if shown is not None else None],
                         sort_keys=True, ensure_ascii=False, default=str)
        if key in self.judgements:
            return self.judgements[key]
        pending = self._pending.get(key)
        if pending is not None and pending.get_loop() is asyncio.get_running_loop():
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            result = await self.judge(true, pred, shown)
        except BaseException as error:
            if isinstance(error, asyncio.CancelledError):
                future.cancel()
            elif not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        else:
            self.judgements[key] = result
            future.set_result(result)
            return result
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]

    async def judge(self, y_true: dict, y_pred: dict, x: Any = None) -> Scored:
        """One judge call (no cache): the verdict's score on [0, 1] and its critique."""
        from promptrl.language_model import usage_role

        if self.language_model is None:
            raise UserError(f"reward '{self.name}' has no language model: pass LMAsJudge(language_model=...)")
        with usage_role("judge"):
            verdict = await self.language_model.generate(self.messages(y_true, y_pred, x), Verdict, seed=self.seed)
        critique = " ".join(verdict.critique.split()) or "(no critique)"
        score = min(self.high, max(self.low, verdict.score))
        if score != verdict.score:
            critique += f" [judge score {verdict.score} is off the scale {self.low}..{self.high}; clipped to {score}]"
        return Scored((score - self.low) / (self.high - self.low), critique)

    async def score(self, y_true: dict, y_pred: dict) -> float:  # the Reward API, without an input
        return (await self.judge(y_true, y_pred)).score
