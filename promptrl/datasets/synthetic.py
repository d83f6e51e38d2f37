"""Offline synthetic tasks generated from a seed: no download, no licence, any size.

Chosen because the embedded 135M model visibly learns them from few-shot examples
(DESIGN.md: sentiment 63% -> 87%, two-digit addition 7% -> 20%, 0-shot -> 3-shot).
"""

from __future__ import annotations

import itertools
import random
from typing import Literal

from promptrl.data_model import DataModel, Field
from promptrl.datasets import Dataset, register
from promptrl.errors import UserError


class Review(DataModel):
    text: str = Field(description="A short customer review")


class Sentiment(DataModel):
    answer: Literal["positive", "negative"] = Field(description="The sentiment of the review")


class AdditionQuestion(DataModel):
    question: str = Field(description="An addition of two numbers")


class NumericAnswer(DataModel):
    answer: int = Field(description="The numeric result")


_SUBJECTS = [
    "The movie", "This phone", "The pizza", "Our hotel room", "The concert", "This book", "The service",
    "The new album", "This laptop", "The coffee", "The staff", "The game", "This jacket", "The museum",
    "The flight", "The soup", "This app", "The show", "The chair", "The restaurant", "The camera",
    "The tour", "This headset", "The salad", "The class",
]
_POSITIVE = [
    "wonderful", "excellent", "amazing", "delightful", "fantastic", "great", "superb", "lovely",
    "brilliant", "enjoyable", "charming", "outstanding", "pleasant", "impressive", "perfect",
]
_NEGATIVE = [
    "terrible", "awful", "horrible", "disappointing", "boring", "dreadful", "poor", "bad",
    "annoying", "mediocre", "unpleasant", "useless", "frustrating", "disgusting", "broken",
]
_TEMPLATES = [
    "{s} was {a}.", "{s} is really {a}.", "Honestly, {s_l} was {a}.", "{s} turned out {a}.",
    "I found {s_l} {a}.", "{s} felt {a} to me.",
]


def _sentiment_pool(rng: random.Random) -> list[tuple[str, str]]:
    rows = [
        (template.format(s=subject, s_l=subject[0].lower() + subject[1:], a=adjective), label)
        for label, adjectives in (("positive", _POSITIVE), ("negative", _NEGATIVE))
        for subject, adjective, template in itertools.product(_SUBJECTS, adjectives, _TEMPLATES)
    ]
    rng.shuffle(rows)
    return rows


def _split(rows: list, train_pool: int, test_pool: int, name: str):
    if train_pool + test_pool > len(rows):
        raise UserError(f"{name}: train_pool + test_pool must be <= {len(rows)} (got {train_pool + test_pool})")
    return rows[:train_pool], rows[train_pool:train_pool + test_pool]


@register("sentiment")
def load_sentiment(seed: int | None = 0, train_pool: int = 500, test_pool: int = 500, **_) -> Dataset:
    """Label short templated reviews positive/negative. Train and test share no sentence."""
    train, test = _split(_sentiment_pool(random.Random(seed)), train_pool, test_pool, "sentiment")
    return Dataset(
        name="sentiment",
        x_train=[Review(text=t) for t, _ in train], y_train=[Sentiment(answer=a) for _, a in train],
        x_test=[Review(text=t) for t, _ in test], y_test=[Sentiment(answer=a) for _, a in test],
        input_data_model=Review, output_data_model=Sentiment,
    )


@register("addition")
def load_addition(seed: int | None = 0, train_pool: int = 500, test_pool: int = 500, **_) -> Dataset:
    """Two-digit additions ("What is 34 + 58?" -> 92). Train and test share no question."""
    rng = random.Random(seed)
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    rng.shuffle(pairs)
    train, test = _split(pairs, train_pool, test_pool, "addition")

    def rows(part):
        return ([AdditionQuestion(question=f"What is {a} + {b}?") for a, b in part],
                [NumericAnswer(answer=a + b) for a, b in part])

    (x_train, y_train), (x_test, y_test) = rows(train), rows(test)
    return Dataset("addition", x_train, y_train, x_test, y_test, AdditionQuestion, NumericAnswer)
