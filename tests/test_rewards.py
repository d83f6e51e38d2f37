"""Rewards, masks and metrics: each scores one prediction against its target in [0, 1]."""

from __future__ import annotations

import asyncio
import math

import pytest

from promptrl import DataModel, Field, PredictionError
from promptrl.embeddings import EmbeddingModel
from promptrl.metrics import Accuracy, F1Score, RewardMetric
from promptrl.rewards import CosineSimilarity, ExactMatch, apply_mask


def score(reward, y_true, y_pred) -> float:
    return asyncio.run(reward(y_true, y_pred))


class Answer(DataModel):
    answer: str = Field(description="The answer")


class AnswerWithThinking(DataModel):
    thinking: str
    answer: str


# ---- masks -------------------------------------------------------------------------------------

def test_apply_mask_in_mask_keeps_only_listed_fields():
    value = {"thinking": "long", "answer": "18", "unit": "apples"}
    assert apply_mask(value, in_mask=["answer"]) == {"answer": "18"}
    assert apply_mask(value, in_mask=["answer", "unit", "absent"]) == {"answer": "18", "unit": "apples"}


def test_apply_mask_out_mask_drops_listed_fields():
    value = {"thinking": "long", "answer": "18", "unit": "apples"}
    assert apply_mask(value, out_mask=["thinking"]) == {"answer": "18", "unit": "apples"}


def test_apply_mask_both_masks_in_then_out():
    value = {"thinking": "long", "answer": "18", "unit": "apples"}
    assert apply_mask(value, in_mask=["answer", "unit"], out_mask=["unit"]) == {"answer": "18"}


def test_apply_mask_accepts_models_and_none():
    assert apply_mask(AnswerWithThinking(thinking="t", answer="a"), in_mask=["answer"]) == {"answer": "a"}
    assert apply_mask(None, in_mask=["answer"]) == {}
    assert apply_mask({"a": 1}) == {"a": 1}


def test_reward_with_in_mask_ignores_chain_of_thought_thinking():
    y_true = {"answer": "the cat sat"}
    y_pred = AnswerWithThinking(thinking="let me think about dogs and birds", answer="the cat sat")
    assert score(F1Score(in_mask=["answer"]), y_true, y_pred) == 1.0
    assert score(F1Score(out_mask=["thinking"]), y_true, y_pred) == 1.0
    # Without the mask the thinking tokens count against precision.
    assert score(F1Score(), y_true, y_pred) < 1.0


def test_exact_match_in_mask_ignores_other_target_fields():
    y_true = {"answer": 18, "explanation": "because 3 * 6 = 18"}
    y_pred = {"thinking": "3 times 6", "answer": 18}
    assert score(ExactMatch(in_mask=["answer"]), y_true, y_pred) == 1.0
    assert score(ExactMatch(), y_true, y_pred) == 0.0  # the unmasked explanation is missing from the prediction


# ---- ExactMatch ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "expected, predicted, reward",
    [
        (18, 18.0, 1.0),
        (18.0, 18, 1.0),
        ("18", 18, 1.0),
        (18, "18", 1.0),
        ("1,234", 1234, 1.0),
        (1234.0, "1,234", 1.0),
        (" 18 ", 18, 1.0),
        ("$18", 18, 1.0),
        (-5, "-5.0", 1.0),
        (0.1 + 0.2, 0.3, 1.0),
        (18.5, 18, 0.0),
        (18, 18.5, 0.0),
        (18, "18 apples", 0.0),
        (1234, "1234,", 0.0),
    ],
)
def test_exact_match_compares_numbers_as_numbers(expected, predicted, reward):
    assert score(ExactMatch(), {"answer": expected}, {"answer": predicted}) == reward


def test_exact_match_booleans_compare_as_booleans():
    assert score(ExactMatch(), {"answer": True}, {"answer": True}) == 1.0
    assert score(ExactMatch(), {"answer": False}, {"answer": False}) == 1.0
    assert score(ExactMatch(), {"answer": True}, {"answer": False}) == 0.0
    assert score(ExactMatch(), {"answer": True}, {"answer": "1"}) == 0.0


@pytest.mark.parametrize("expected, predicted", [(True, 1), (1, True), (False, 0), (0.0, False)])
def test_exact_match_bool_is_not_a_number(expected, predicted):
    assert score(ExactMatch(), {"answer": expected}, {"answer": predicted}) == 0.0


def test_exact_match_trims_strings():
    assert score(ExactMatch(), {"answer": "positive"}, {"answer": "  positive\n"}) == 1.0
    assert score(ExactMatch(), {"answer": "positive"}, {"answer": "positive."}) == 0.0


def test_exact_match_case_sensitivity():
    assert score(ExactMatch(), {"answer": "Positive"}, {"answer": "positive"}) == 0.0
    assert score(ExactMatch(case_sensitive=False), {"answer": "Positive"}, {"answer": " positive"}) == 1.0
    assert score(ExactMatch(case_sensitive=False), {"answer": "Positive"}, {"answer": "negative"}) == 0.0


def test_exact_match_lists_elementwise_in_order():
    assert score(ExactMatch(), {"tags": ["a", "2"]}, {"tags": [" a", 2]}) == 1.0
    assert score(ExactMatch(), {"tags": ["a", "b"]}, {"tags": ["b", "a"]}) == 0.0
    assert score(ExactMatch(), {"tags": ["a", "b"]}, {"tags": ["a"]}) == 0.0


def test_exact_match_failed_prediction_missing_field_or_empty_target_scores_zero():
    assert score(ExactMatch(), {"answer": "x"}, None) == 0.0
    assert score(ExactMatch(), {"answer": "x"}, {"other": "x"}) == 0.0
    assert score(ExactMatch(in_mask=["absent"]), {"answer": "x"}, {"answer": "x"}) == 0.0


def test_exact_match_takes_data_models():
    assert score(ExactMatch(), Answer(answer="yes"), AnswerWithThinking(thinking="hm", answer="yes")) == 1.0
    assert score(ExactMatch(), Answer(answer="yes"), AnswerWithThinking(thinking="hm", answer="no")) == 0.0


def test_exact_match_requires_every_kept_field():
    y_true = {"a": 1, "b": "x"}
    assert score(ExactMatch(), y_true, {"a": 1, "b": "x"}) == 1.0
    assert score(ExactMatch(), y_true, {"a": 1, "b": "y"}) == 0.0
    assert score(ExactMatch(out_mask=["b"]), y_true, {"a": 1, "b": "y"}) == 1.0


# ---- CosineSimilarity -------------------------------------------------------------------------------

class FakeEmbeddings(EmbeddingModel):
    """Fixed vectors per text; records every call."""

    def __init__(self, vectors: dict[str, list[float]]):
        super().__init__(model="fake/embeddings")
        self.vectors = vectors
        self.calls: list[list[str]] = []

    async def embed(self, texts):
        self.calls.append(list(texts))
        return [self.vectors[t] for t in texts]


def test_cosine_identical_text_is_one_without_embedding_call():
    fake = FakeEmbeddings({})
    reward = CosineSimilarity(embedding_model=fake)
    assert score(reward, {"answer": "same text"}, {"answer": "same text"}) == 1.0
    assert fake.calls == []


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([1.0, 0.0], [0.0, 1.0], 0.0),        # orthogonal
        ([1.0, 0.0], [-1.0, 0.0], 0.0),       # opposite: clipped to 0
        ([1.0, 1.0], [1.0, 0.0], 1 / math.sqrt(2)),
        ([0.1, 0.2, 0.3], [0.2, 0.4, 0.6], 1.0),  # parallel: 1 (clipped, never above)
        ([0.0, 0.0], [1.0, 0.0], 0.0),        # zero vector
    ],
)
def test_cosine_similarity_values_and_clipping(a, b, expected):
    fake = FakeEmbeddings({"alpha": a, "beta": b})
    value = score(CosineSimilarity(embedding_model=fake), {"answer": "alpha"}, {"answer": "beta"})
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(expected)
    assert fake.calls == [["alpha", "beta"]]


def test_cosine_embeds_the_masked_field_text():
    fake = FakeEmbeddings({"Paris": [1.0, 0.0], "Lyon": [0.6, 0.8]})
    reward = CosineSimilarity(embedding_model=fake, in_mask=["answer"])
    value = score(reward, {"answer": "Paris"}, {"thinking": "it is the capital", "answer": "Lyon"})
    assert value == pytest.approx(0.6)
    assert fake.calls == [["Paris", "Lyon"]]


def test_cosine_failed_prediction_scores_zero():
    fake = FakeEmbeddings({})
    assert score(CosineSimilarity(embedding_model=fake), {"answer": "x"}, None) == 0.0
    assert fake.calls == []


def test_cosine_embedding_error_is_a_prediction_error():
    class Broken(EmbeddingModel):
        async def embed(self, texts):
            raise PredictionError("embedding service down")

    with pytest.raises(PredictionError):
        score(CosineSimilarity(embedding_model=Broken("fake/x")), {"answer": "a"}, {"answer": "b"})


# ---- metrics ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "truth, pred, expected",
    [
        ("the cat sat", "the cat", 0.8),
        ("the cat", "the cat sat", 0.8),
        ("the cat sat", "the cat sat", 1.0),
        ("The Cat, sat!", "the cat sat", 1.0),
        ("the cat sat", "a dog ran", 0.0),
        ("a a b", "a b", 0.8),
        ("", "", 1.0),
        ("x", "", 0.0),
    ],
)
def test_f1_score_token_level(truth, pred, expected):
    assert score(F1Score(), {"answer": truth}, {"answer": pred}) == pytest.approx(expected)


def test_f1_score_failed_prediction_is_zero():
    assert score(F1Score(), {"answer": "the cat"}, None) == 0.0


def test_accuracy_is_exact_match_named_accuracy():
    metric = Accuracy(in_mask=["answer"])
    assert metric.name == "accuracy"
    assert score(metric, {"answer": 18}, {"thinking": "t", "answer": "18"}) == 1.0
    assert score(metric, {"answer": 18}, {"thinking": "t", "answer": "19"}) == 0.0


def test_reward_names():
    assert ExactMatch().name == "exact_match"
    assert F1Score().name == "f1_score"
    assert CosineSimilarity(embedding_model=FakeEmbeddings({})).name == "cosine_similarity"
    assert ExactMatch(name="em_answer").name == "em_answer"


def test_reward_metric_watches_a_reward_under_its_name_or_a_given_one():
    reward = ExactMatch(in_mask=["answer"], case_sensitive=False)
    metric = RewardMetric(reward)
    assert metric.name == "exact_match"
    assert metric.in_mask == ["answer"]
    assert RewardMetric(reward, name="em").name == "em"
    assert score(metric, {"answer": "Yes"}, {"thinking": "x", "answer": "yes"}) == 1.0
    assert score(metric, {"answer": "Yes"}, {"thinking": "x", "answer": "no"}) == 0.0
    assert score(metric, {"answer": "Yes"}, None) == 0.0


def test_f1_treats_numbers_as_single_tokens():
    import asyncio

    from promptrl.metrics import F1Score

    f1 = F1Score()
    assert asyncio.run(f1({"answer": 18.0}, {"answer": 12.0})) == 0.0  # not half right through a "0" token
    assert asyncio.run(f1({"answer": 18.0}, {"answer": 18})) == 1.0
    assert asyncio.run(f1({"answer": 12.5}, {"answer": 12.0})) == 0.0


def test_offline_ngram_cosine_tells_different_labels_apart():
    import asyncio

    from promptrl.rewards import CosineSimilarity

    reward = CosineSimilarity(in_mask=["answer"])  # default: local/ngrams, no model, no network
    same = asyncio.run(reward({"answer": "Paris"}, {"answer": "paris"}))
    close = asyncio.run(reward({"answer": "the cat sat on the mat"}, {"answer": "a cat was sitting on the mat"}))
    apart = asyncio.run(reward({"answer": "positive"}, {"answer": "negative"}))
    assert same == pytest.approx(1.0) and apart < 0.5 < close < 1.0


@pytest.mark.parametrize("true, pred", [
    ({"a": "x", "b": 1}, {"a": " x ", "b": "1.0"}), ({"a": "x", "b": 1}, {"a": "y", "b": 2}), ({"a": "X"}, {"a": "x"}),
    ({"a": "x"}, {}), ({}, {"a": "x"}), ({"a": [1, "2"]}, {"a": [1.0, 2]}), ({"a": True}, {"a": 1}),
])
@pytest.mark.parametrize("case_sensitive", [True, False])
def test_exact_match_scored_in_one_pass_agrees_with_score_and_feedback(true, pred, case_sensitive):
    reward = ExactMatch(case_sensitive=case_sensitive)
    score = asyncio.run(reward.score(true, pred))
    assert tuple(asyncio.run(reward.scored(true, pred))) == (score, reward.feedback(true, pred, score))


def test_a_subclass_of_exact_match_keeps_its_own_score_and_feedback():
    class CaseFree(ExactMatch):
        async def score(self, y_true, y_pred):
            return float(str(y_true["answer"]).lower() == str(y_pred["answer"]).lower())

        def feedback(self, y_true, y_pred, score):
            return "custom"

    assert tuple(asyncio.run(CaseFree().scored({"answer": "Yes"}, {"answer": "yes"}))) == (1.0, "custom")
