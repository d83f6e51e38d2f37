"""fit / evaluate: pairing of rewards with predictions, concurrency, failed predictions,
RandomFewShot, callbacks (checkpoint, early stopping, history files)."""

from __future__ import annotations

import asyncio
import csv
import json
import math

import pytest

from promptrl import (
    DataModel, Field, Generator, Input, PredictionError, Program, UserError, callbacks, metrics, rewards,
)
from promptrl.callbacks import CallbackList, EarlyStopping, HistoryLogger, ProgramCheckpoint
from promptrl.embeddings import EmbeddingModel
from promptrl.optimizers import RandomFewShot
from promptrl.testing import ScriptedLanguageModel, last_user_input
from promptrl.engine.transports import Completion
from promptrl.trainer import Prediction, evaluate, evaluate_runs


class Item(DataModel):
    text: str = Field(description="An item like 'item 3'")


class Label(DataModel):
    answer: str = Field(description="The label")


def index_of(messages) -> int:
    return int(last_user_input(messages)["text"].split()[1])


def make_data(n: int):
    return [Item(text=f"item {i}") for i in range(n)], [Label(answer=f"label {i}") for i in range(n)]


def build(lm, name="gen"):
    x0 = Input(Item)
    x1 = Generator(Label, lm, name=name)(x0)
    return Program(x0, x1, name="labeler")


def correct_only_for(correct: set[int]):
    def responder(messages, output_model):
        i = index_of(messages)
        return {"answer": f"label {i}" if i in correct else "wrong"}

    return responder


# ---- pairing: rewards follow their own prediction whatever the completion order ------------------------------

N = 8
CORRECT = {1, 4, 6}


def reversed_completion_lm(order: list[int], correct=CORRECT):
    """Later examples finish first: delay decreases with the example index."""
    answer = correct_only_for(correct)

    def responder(messages, output_model):
        order.append(index_of(messages))
        return answer(messages, output_model)

    return ScriptedLanguageModel(responder, delay=lambda m: 0.01 * (N - index_of(m)), concurrency=N)


def test_evaluate_pairs_each_reward_with_its_own_prediction():
    order: list[int] = []
    program = build(reversed_completion_lm(order))
    program.compile(reward=rewards.ExactMatch(), metrics=[metrics.F1Score()])
    xs, ys = make_data(N)
    logs, predictions = asyncio.run(evaluate(program, xs, ys, batch_size=N, return_predictions=True))
    assert order != sorted(order)  # the premise: calls did not complete in example order
    assert [p.index for p in predictions] == list(range(N))
    for i, prediction in enumerate(predictions):
        assert prediction.x.text == f"item {i}"
        assert prediction.y_true.answer == f"label {i}"
        expected_answer = f"label {i}" if i in CORRECT else "wrong"
        assert prediction.y_pred.answer == expected_answer
        assert prediction.reward == (1.0 if i in CORRECT else 0.0)
        assert prediction.scores["f1_score"] == (1.0 if i in CORRECT else 0.0)
    assert logs["reward"] == pytest.approx(len(CORRECT) / N)
    assert logs["failures"] == 0


def test_the_runs_of_an_evaluation_go_example_by_example_and_score_as_separate_evaluations():
    """evaluate_runs asks example 0 of every run, then example 1, ... (a prompt cache then evaluates
    each prompt once for all runs); each run still gets the replies and scores of its own seed."""
    calls: list[tuple[int, int]] = []
    lm = ScriptedLanguageModel(lambda m, o: {}, concurrency=1)

    async def complete(messages, output_model, schema, seed, response_format=None):
        i = index_of(messages)
        calls.append((i, seed))
        text = json.dumps({"answer": f"label {i}" if (seed + i) % 3 else "wrong"})  # right or wrong by seed
        return Completion(text=text, prompt_tokens=10, completion_tokens=3)

    lm._transport.complete = complete
    program = build(lm)
    program.compile(reward=rewards.ExactMatch())
    xs, ys = make_data(N)
    runs = asyncio.run(evaluate_runs(program, xs, ys, seeds=[11, 12, 13]))
    assert [i for i, _ in calls] == [i for i in range(N) for _ in range(3)]
    for seed, (logs, predictions) in zip([11, 12, 13], runs):
        alone_logs, alone = asyncio.run(evaluate(program, xs, ys, seed=seed, return_predictions=True))
        assert logs == alone_logs
        assert [(p.index, p.y_pred, p.reward) for p in predictions] == [(p.index, p.y_pred, p.reward) for p in alone]
    assert len({logs["reward"] for logs, _ in runs}) > 1  # the premise: the seeds give different runs


def test_fit_pairs_rewards_so_the_few_shot_pool_holds_only_correct_answers():
    order: list[int] = []
    program = build(reversed_completion_lm(order))
    optimizer = RandomFewShot(k=3, k_best=10)
    program.compile(reward=rewards.ExactMatch(), optimizer=optimizer)
    xs, ys = make_data(N)
    history = asyncio.run(program.fit(xs, ys, epochs=1, batch_size=N))
    assert history.history["reward"] == [pytest.approx(len(CORRECT) / N)]
    # every input entered the pool with the reward of its own example...
    pool = optimizer.pool["gen"]
    rewarded = {int(e["input"]["text"].split()[1]): e["reward"] for e in pool.values()}
    assert rewarded == {i: (1.0 if i in CORRECT else 0.0) for i in range(N)}
    # ...so only correctly answered inputs are eligible demonstrations
    eligible = {e["input"]["text"] for e in optimizer.best("gen")}
    assert eligible == {f"item {i}" for i in CORRECT}
    examples = program.get_module("gen").examples
    assert len(examples) == 3
    for example in examples:
        i = int(example["input"]["text"].split()[1])
        assert i in CORRECT and example["output"] == {"answer": f"label {i}"}


def test_fit_pairs_rewards_across_several_batches_and_epochs():
    order: list[int] = []
    program = build(reversed_completion_lm(order, correct={0, 5}))
    optimizer = RandomFewShot(k=2, k_best=10)
    program.compile(reward=rewards.ExactMatch(), optimizer=optimizer)
    xs, ys = make_data(N)
    asyncio.run(program.fit(xs, ys, epochs=2, batch_size=3))
    assert {e["input"]["text"] for e in optimizer.best("gen")} == {"item 0", "item 5"}


# ---- concurrency ---------------------------------------------------------------------------------------------

def tracking_lm(concurrency: int, seconds: float = 0.01):
    state = {"in_flight": 0, "peak": 0}

    def delay(messages):
        state["in_flight"] += 1
        state["peak"] = max(state["peak"], state["in_flight"])
        return seconds

    def responder(messages, output_model):
        state["in_flight"] -= 1
        return {"answer": f"label {index_of(messages)}"}

    return ScriptedLanguageModel(responder, delay=delay, concurrency=concurrency), state


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_at_most_concurrency_calls_in_flight(concurrency):
    lm, state = tracking_lm(concurrency)
    program = build(lm)
    program.compile(reward=rewards.ExactMatch())
    xs, ys = make_data(9)
    logs = asyncio.run(program.evaluate(xs, ys, batch_size=9))
    assert logs["reward"] == 1.0
    assert state["peak"] == concurrency
    assert state["in_flight"] == 0


def test_batch_size_bounds_parallelism_below_concurrency():
    lm, state = tracking_lm(concurrency=16)
    program = build(lm)
    program.compile(reward=rewards.ExactMatch())
    xs, ys = make_data(8)
    asyncio.run(program.fit(xs, ys, epochs=1, batch_size=4))
    assert state["peak"] == 4


def test_same_language_model_across_several_event_loops():
    lm, state = tracking_lm(concurrency=2, seconds=0.002)
    program = build(lm)
    program.compile(reward=rewards.ExactMatch())
    xs, ys = make_data(6)
    for _ in range(3):  # each asyncio.run is a new loop; the semaphore must follow
        assert asyncio.run(program.evaluate(xs, ys, batch_size=6))["reward"] == 1.0
    assert state["peak"] == 2
    assert lm.usage.calls == 18


# ---- failed predictions -------------------------------------------------------------------------------------

class ServiceUnavailableError(Exception):
    """A transient provider error, as litellm and the lean client name it."""


def flaky_responder(messages, output_model):
    i = index_of(messages)
    if i == 1:
        return "this is not JSON {"
    if i == 2:
        return {"answer": ["a", "list"]}  # wrong type for a str field
    if i == 3:
        raise ServiceUnavailableError("server exploded")  # no answer: left out of the scores
    if i == 4:
        return {"answer": "label 4", "extra": 1}  # extra key: fails validation
    if i == 5:
        return "```json\n" + json.dumps({"answer": "label 5"}) + "\n```"  # fenced JSON is fine
    return {"answer": f"label {i}"}


def test_failed_predictions_score_zero_and_calls_without_answer_are_left_out():
    lm = ScriptedLanguageModel(flaky_responder, num_retries=0)
    program = build(lm)
    program.compile(reward=rewards.ExactMatch(), metrics=[metrics.F1Score()])
    xs, ys = make_data(7)
    logs, predictions = asyncio.run(evaluate(program, xs, ys, batch_size=7, return_predictions=True))
    assert logs["failures"] == 3 and logs["infra_failures"] == 1
    # 3 right out of the 6 answered: the provider's failure is not scored as a wrong answer
    assert logs["reward"] == pytest.approx(3 / 6)
    assert logs["f1_score"] == pytest.approx(3 / 6)
    for i in (1, 2, 3, 4):
        assert predictions[i].y_pred is None
        assert predictions[i].reward == 0.0
        assert predictions[i].error
    assert [predictions[i].failure for i in (1, 2, 3, 4)] == ["invalid", "invalid", "infrastructure", "invalid"]
    assert "server exploded" in predictions[3].error
    for i in (0, 5, 6):
        assert predictions[i].error is None and predictions[i].reward == 1.0
    assert lm.usage.failures == 4


def test_fit_survives_failed_predictions_and_never_learns_from_them():
    lm = ScriptedLanguageModel(flaky_responder, num_retries=0)
    program = build(lm)
    optimizer = RandomFewShot(k=5, k_best=10)
    program.compile(reward=rewards.ExactMatch(), optimizer=optimizer)
    xs, ys = make_data(7)
    history = asyncio.run(program.fit(xs, ys, validation_data=(xs, ys), epochs=1, batch_size=3))
    assert history.history["failures"] == [3] and history.history["infra_failures"] == [1]
    assert history.history["val_failures"] == [3] and history.history["val_infra_failures"] == [1]
    assert {e["input"]["text"] for e in optimizer.best("gen")} == {"item 0", "item 5", "item 6"}
    assert lm.usage.failures == 8


def test_predict_returns_none_for_failed_predictions():
    program = build(ScriptedLanguageModel(flaky_responder, num_retries=0))
    xs, _ = make_data(4)
    predictions = asyncio.run(program.predict(xs, batch_size=2))
    assert [p is None for p in predictions] == [False, True, True, True]
    assert predictions[0].answer == "label 0"


def test_failing_embedding_in_reward_leaves_the_example_unscored_without_raising():
    class FlakyEmbeddings(EmbeddingModel):
        async def embed(self, texts):
            if "wrong" in texts[1]:
                raise PredictionError("embedding failed")
            return [[1.0, 0.0], [1.0, 0.0]]

    program = build(ScriptedLanguageModel(correct_only_for({0})))
    program.compile(reward=rewards.CosineSimilarity(embedding_model=FlakyEmbeddings("fake/e")))
    xs, ys = make_data(2)
    logs, predictions = asyncio.run(evaluate(program, xs, ys, return_predictions=True))
    assert predictions[1].error and "embedding failed" in predictions[1].error
    assert predictions[1].failure == "infrastructure"  # no score is not a zero: left out and counted
    assert logs["reward"] == 1.0 and logs["infra_failures"] == 1


# ---- RandomFewShot ---------------------------------------------------------------------------------------------

def pred(text: str, reward: float | None, answer: str = "out", module: str = "gen") -> Prediction:
    return Prediction(index=0, x=None, reward=reward,
                      trace=[{"module": module, "input": {"text": text}, "output": {"answer": answer}}])


def program_for_optimizer():
    return build(ScriptedLanguageModel(lambda m, o: {"answer": "x"}))


def test_random_few_shot_pool_keeps_one_entry_per_input_with_its_best_reward():
    optimizer = RandomFewShot(k=3)
    optimizer.record([pred("a", 0.2, "first"), pred("b", 1.0), pred("a", 0.9, "best"), pred("a", 0.5, "later")])
    pool = optimizer.pool["gen"]
    assert len(pool) == 2
    entry = next(e for e in pool.values() if e["input"] == {"text": "a"})
    assert entry["reward"] == 0.9 and entry["output"] == {"answer": "best"}


def test_random_few_shot_ignores_unscored_predictions():
    optimizer = RandomFewShot()
    optimizer.record([pred("a", None)])
    assert optimizer.pool == {}


def test_random_few_shot_selects_k_among_k_best_above_min_reward():
    rewards_by_input = {"a": 1.0, "b": 0.95, "c": 0.9, "d": 0.8, "e": 0.7, "f": 0.3, "g": 0.3, "h": 0.0}
    top3 = {"a", "b", "c"}
    chosen_ever: set[str] = set()
    for seed in range(25):
        optimizer = RandomFewShot(k=2, k_best=3, seed=seed)
        optimizer.record([pred(t, r, f"out {t}") for t, r in rewards_by_input.items()])
        program = program_for_optimizer()
        optimizer.select_examples(program)
        examples = program.get_module("gen").examples
        assert len(examples) == 2
        texts = {e["input"]["text"] for e in examples}
        assert len(texts) == 2 and texts <= top3
        assert all(e["output"] == {"answer": f"out {e['input']['text']}"} for e in examples)
        chosen_ever |= texts
    assert chosen_ever == top3  # the choice is random among the k_best, not always the same


def test_random_few_shot_never_selects_reward_at_or_below_min_reward():
    optimizer = RandomFewShot(k=10, k_best=10, min_reward=0.5)
    optimizer.record([pred("a", 0.5), pred("b", 0.51), pred("c", 0.0), pred("d", 1.0)])
    program = program_for_optimizer()
    optimizer.select_examples(program)
    assert {e["input"]["text"] for e in program.get_module("gen").examples} == {"b", "d"}

    zero = RandomFewShot(k=3)
    zero.record([pred("a", 0.0), pred("b", 0.0)])
    program = program_for_optimizer()
    program.get_module("gen").examples = [{"input": {"text": "keep"}, "output": {"answer": "me"}}]
    zero.select_examples(program)
    assert program.get_module("gen").examples == [{"input": {"text": "keep"}, "output": {"answer": "me"}}]


def test_random_few_shot_is_reproducible_with_a_seed():
    def run(seed):
        optimizer = RandomFewShot(k=3, k_best=8, seed=seed)
        optimizer.record([pred(str(i), 1.0 - i / 100) for i in range(10)])
        program = program_for_optimizer()
        picks = []
        for _ in range(4):
            optimizer.select_examples(program)
            picks.append([e["input"]["text"] for e in program.get_module("gen").examples])
        return picks

    assert run(7) == run(7)
    assert any(run(7) != run(s) for s in range(8, 14))


def test_random_few_shot_k_larger_than_candidates_takes_them_all():
    optimizer = RandomFewShot(k=5, k_best=10)
    optimizer.record([pred("a", 1.0), pred("b", 0.5), pred("c", 0.0)])
    program = program_for_optimizer()
    optimizer.select_examples(program)
    assert sorted(e["input"]["text"] for e in program.get_module("gen").examples) == ["a", "b"]


def test_random_few_shot_k_zero_clears_examples():
    optimizer = RandomFewShot(k=0)
    optimizer.record([pred("a", 1.0)])
    program = program_for_optimizer()
    program.get_module("gen").examples = [{"input": {"text": "old"}, "output": {"answer": "x"}}]
    optimizer.select_examples(program)
    assert program.get_module("gen").examples == []


@pytest.mark.parametrize("k, k_best", [(-1, 3), (3, 0)])
def test_random_few_shot_rejects_bad_sizes(k, k_best):
    with pytest.raises(UserError):
        RandomFewShot(k=k, k_best=k_best)


def test_random_few_shot_state_round_trips_through_json():
    optimizer = RandomFewShot(k=2, k_best=3, seed=1)
    optimizer.record([pred("a", 1.0), pred("b", 0.4), pred("c", 0.0, module="other")])
    state = json.loads(json.dumps(optimizer.get_state()))
    restored = RandomFewShot(k=2, k_best=3)
    restored.set_state(state)
    assert restored.pool == optimizer.pool
    assert restored.best("gen") == optimizer.best("gen")


def test_fit_with_same_seed_learns_the_same_examples():
    def train():
        program = build(ScriptedLanguageModel(correct_only_for(set(range(0, 12, 2)))))
        program.compile(reward=rewards.ExactMatch(), optimizer=RandomFewShot(k=2, k_best=5, seed=0))
        xs, ys = make_data(12)
        asyncio.run(program.fit(xs, ys, epochs=2, batch_size=4, seed=0))
        return program.trainable_variables

    assert train() == train()


# ---- fit / evaluate API ---------------------------------------------------------------------------------------

def test_fit_history_has_reward_and_metric_keys_per_epoch(tmp_path):
    program = build(ScriptedLanguageModel(correct_only_for({0, 1, 2})))
    program.compile(reward=rewards.ExactMatch(), optimizer=RandomFewShot(k=1), metrics=[metrics.F1Score()])
    xs, ys = make_data(6)
    logger = HistoryLogger(tmp_path / "history.jsonl", tmp_path / "history.csv")
    history = asyncio.run(program.fit(xs[:4], ys[:4], validation_data=(xs[4:], ys[4:]), epochs=3, batch_size=2,
                                      callbacks=[logger]))
    for key in ("reward", "val_reward", "f1_score", "val_f1_score", "failures", "val_failures"):
        assert len(history.history[key]) == 3, key
    assert history.history["reward"] == [0.75, 0.75, 0.75]
    assert history.history["val_reward"] == [0.0, 0.0, 0.0]
    assert [r["epoch"] for r in history.records()] == [0, 1, 2]

    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert len(lines) == 3
    rows = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # files count epochs from 1 (0 = untrained)
    assert rows[0]["reward"] == 0.75 and rows[0]["val_reward"] == 0.0 and "val_f1_score" in rows[0]

    with open(tmp_path / "history.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3
    assert [r["epoch"] for r in table] == ["1", "2", "3"]
    assert float(table[2]["reward"]) == 0.75 and "val_reward" in table[0]


def test_fit_without_validation_has_no_val_keys():
    program = build(ScriptedLanguageModel(correct_only_for({0})))
    program.compile(reward=rewards.ExactMatch())
    xs, ys = make_data(2)
    history = asyncio.run(program.fit(xs, ys, epochs=2, batch_size=2))
    assert history.history["reward"] == [0.5, 0.5]
    assert not any(k.startswith("val_") for k in history.history)


def test_fit_without_compile_is_a_user_error():
    program = build(ScriptedLanguageModel(correct_only_for({0})))
    xs, ys = make_data(2)
    with pytest.raises(UserError, match="compile"):
        asyncio.run(program.fit(xs, ys))
    with pytest.raises(UserError, match="compile"):
        asyncio.run(program.evaluate(xs, ys))


def test_mismatched_lengths_are_user_errors():
    lm = ScriptedLanguageModel(correct_only_for({0}))
    program = build(lm)
    program.compile(reward=rewards.ExactMatch())
    xs, ys = make_data(3)
    with pytest.raises(UserError, match="3 examples but y has 2"):
        asyncio.run(program.fit(xs, ys[:2]))
    with pytest.raises(UserError, match="validation_data"):
        asyncio.run(program.fit(xs, ys, validation_data=(xs, ys[:1])))
    with pytest.raises(UserError):
        asyncio.run(program.evaluate(xs[:1], ys))
    assert lm.usage.calls == 0  # checked before any LM call


def test_fit_bad_batch_size_is_a_user_error():
    program = build(ScriptedLanguageModel(correct_only_for({0})))
    program.compile(reward=rewards.ExactMatch())
    xs, ys = make_data(2)
    with pytest.raises(UserError, match="batch_size"):
        asyncio.run(program.fit(xs, ys, batch_size=0))


def test_fit_with_zero_epochs_does_nothing():
    lm = ScriptedLanguageModel(correct_only_for({0}))
    program = build(lm)
    program.compile(reward=rewards.ExactMatch(), optimizer=RandomFewShot())
    xs, ys = make_data(2)
    history = asyncio.run(program.fit(xs, ys, epochs=0))
    assert history.history == {} and lm.usage.calls == 0


def test_reward_is_not_overwritten_by_a_metric_with_a_different_name():
    program = build(ScriptedLanguageModel(lambda m, o: {"answer": "LABEL 0"}))
    program.compile(reward=rewards.ExactMatch(case_sensitive=False), metrics=[metrics.Accuracy()])
    xs, ys = make_data(1)
    logs = asyncio.run(program.evaluate(xs, ys))
    assert logs["reward"] == 1.0 and logs["accuracy"] == 0.0


def test_reward_is_not_overwritten_by_a_metric_with_the_same_name():
    program = build(ScriptedLanguageModel(lambda m, o: {"answer": "LABEL 0"}))
    program.compile(reward=rewards.ExactMatch(case_sensitive=False), metrics=[rewards.ExactMatch()])
    xs, ys = make_data(1)
    logs = asyncio.run(program.evaluate(xs, ys))
    assert logs["reward"] == 1.0


def test_metric_named_reward_is_rejected_at_compile():
    class Constant(rewards.Reward):  # default_name "reward" would shadow the reward in the logs
        async def score(self, y_true, y_pred):
            return 0.25

    program = build(ScriptedLanguageModel(lambda m, o: {"answer": "label 0"}))
    with pytest.raises(UserError, match="unique name"):
        program.compile(reward=rewards.ExactMatch(), metrics=[Constant()])
    program.compile(reward=rewards.ExactMatch(), metrics=[Constant(name="constant")])
    xs, ys = make_data(1)
    logs = asyncio.run(program.evaluate(xs, ys))
    assert logs["reward"] == 1.0 and logs["constant"] == 0.25


def test_fit_accepts_a_split_as_validation_data():
    from promptrl.datasets import Split

    program = build(ScriptedLanguageModel(correct_only_for({0, 1})))
    program.compile(reward=rewards.ExactMatch())
    xs, ys = make_data(4)
    history = asyncio.run(program.fit(xs[:2], ys[:2], validation_data=Split(xs[2:], ys[2:]), epochs=1))
    assert history.history["val_reward"] == [0.0]


# ---- ProgramCheckpoint / EarlyStopping ------------------------------------------------------------------------

def saved_instructions(path) -> str:
    state = json.loads(open(path, encoding="utf-8").read())
    return next(n for n in state["nodes"] if n["name"] == "gen")["variables"]["instructions"]


def drive(callback, values, key="val_reward"):
    """Feed on_epoch_end like fit does; the program's instructions record the epoch it was saved at."""
    program = build(ScriptedLanguageModel(correct_only_for(set())))
    CallbackList([callback], program)
    seen = []
    for epoch, value in enumerate(values):
        program.get_module("gen").instructions = f"epoch {epoch}"
        callback.on_epoch_end(epoch, {key: value, "reward": 0.1})
        seen.append(program.stop_training if hasattr(program, "stop_training") else False)
    return program, seen


def test_checkpoint_saves_only_on_improvement(tmp_path):
    path = tmp_path / "best.program.json"
    saves = []

    class Counting(ProgramCheckpoint):
        def on_epoch_end(self, epoch, logs=None):
            before = path.read_text() if path.exists() else None
            super().on_epoch_end(epoch, logs)
            after = path.read_text() if path.exists() else None
            if after != before:
                saves.append(epoch)

    checkpoint = Counting(path)
    drive(checkpoint, [0.5, 0.4, 0.7, 0.7])
    assert saves == [0, 2]
    assert saved_instructions(path) == "epoch 2"
    assert (checkpoint.best, checkpoint.best_epoch, checkpoint.best_path) == (0.7, 2, str(path))


def test_checkpoint_filepath_template_writes_one_file_per_improvement(tmp_path):
    checkpoint = ProgramCheckpoint(tmp_path / "ck_{epoch}_{val_reward:.2f}.program.json")
    drive(checkpoint, [0.5, 0.4, 0.7, 0.7])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck_0_0.50.program.json", "ck_2_0.70.program.json"]
    assert checkpoint.best_path == str(tmp_path / "ck_2_0.70.program.json")
    assert saved_instructions(checkpoint.best_path) == "epoch 2"


def test_checkpoint_mode_min(tmp_path):
    checkpoint = ProgramCheckpoint(tmp_path / "ck_{epoch}.json", monitor="val_loss", mode="min")
    drive(checkpoint, [0.5, 0.4, 0.7, 0.3, 0.3], key="val_loss")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck_0.json", "ck_1.json", "ck_3.json"]
    assert checkpoint.best == 0.3 and checkpoint.best_epoch == 3


def test_checkpoint_save_every_epoch_when_not_best_only(tmp_path):
    checkpoint = ProgramCheckpoint(tmp_path / "ck_{epoch}.json", save_best_only=False)
    drive(checkpoint, [0.5, 0.4, 0.7])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck_0.json", "ck_1.json", "ck_2.json"]
    assert checkpoint.best_epoch == 2


def test_checkpoint_ignores_nan(tmp_path):
    path = tmp_path / "best.json"
    checkpoint = ProgramCheckpoint(path)
    drive(checkpoint, [math.nan, 0.2, math.nan])
    assert checkpoint.best == 0.2 and saved_instructions(path) == "epoch 1"


def test_checkpoint_missing_monitor_key_names_available_keys(tmp_path):
    checkpoint = ProgramCheckpoint(tmp_path / "best.json")
    checkpoint.set_program(program_for_optimizer())
    with pytest.raises(KeyError) as info:
        checkpoint.on_epoch_end(0, {"reward": 0.5, "failures": 0})
    message = str(info.value)
    assert "val_reward" in message and "reward" in message and "failures" in message
    assert not (tmp_path / "best.json").exists()


def test_checkpoint_bad_mode_is_rejected(tmp_path):
    with pytest.raises(UserError, match="mode"):
        ProgramCheckpoint(tmp_path / "x.json", mode="maximum")


def test_checkpoint_during_fit_keeps_the_best_epoch_program(tmp_path):
    # validation reward goes 0 -> 1 -> 0 with the instructions set by a callback each epoch.
    val_correct = {1: True}

    def responder(messages, output_model):
        epoch = int(messages[0]["content"].split()[1])
        return {"answer": "label 0" if val_correct.get(epoch) else "wrong"}

    class SetInstructions(callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.program.get_module("gen").instructions = f"epoch {epoch} instructions"

    program = build(ScriptedLanguageModel(responder))
    program.compile(reward=rewards.ExactMatch())
    xs, ys = make_data(1)
    path = tmp_path / "best.program.json"
    checkpoint = ProgramCheckpoint(path)
    history = asyncio.run(program.fit(xs, ys, validation_data=(xs, ys), epochs=3,
                                      callbacks=[SetInstructions(), checkpoint]))
    assert history.history["val_reward"] == [0.0, 1.0, 0.0]
    assert checkpoint.best_epoch == 1
    assert saved_instructions(path) == "epoch 1 instructions"
    assert Program.load(path).get_module("gen").instructions == "epoch 1 instructions"


def test_early_stopping_patience():
    stopper = EarlyStopping(patience=2)
    _, stopped = drive(stopper, [0.5, 0.6, 0.6, 0.55])
    assert stopped == [False, False, False, True]
    assert stopper.stopped_epoch == 3 and stopper.best == 0.6


def test_early_stopping_min_delta_and_mode_min():
    stopper = EarlyStopping(monitor="val_loss", mode="min", patience=1, min_delta=0.1)
    _, stopped = drive(stopper, [1.0, 0.95], key="val_loss")
    assert stopped == [False, True]


def test_early_stopping_ends_fit():
    program = build(ScriptedLanguageModel(correct_only_for({0})))
    program.compile(reward=rewards.ExactMatch())
    xs, ys = make_data(2)
    stopper = EarlyStopping(patience=2)
    history = asyncio.run(program.fit(xs, ys, validation_data=(xs, ys), epochs=10, callbacks=[stopper]))
    assert len(history.epochs) == 3
    assert stopper.stopped_epoch == 2


def test_early_stopping_missing_monitor_key():
    stopper = EarlyStopping(monitor="val_accuracy")
    stopper.set_program(program_for_optimizer())
    with pytest.raises(KeyError, match="val_accuracy"):
        stopper.on_epoch_end(0, {"reward": 1.0})


def test_history_logger_rewrites_files_every_epoch(tmp_path):
    logger = HistoryLogger(tmp_path / "h.jsonl", tmp_path / "h.csv")
    logger.on_epoch_end(0, {"reward": 0.5})
    assert len((tmp_path / "h.jsonl").read_text().splitlines()) == 1
    logger.on_epoch_end(1, {"reward": 0.75, "val_reward": 0.25})
    assert [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()] == [
        {"epoch": 1, "reward": 0.5}, {"epoch": 2, "reward": 0.75, "val_reward": 0.25}]
    with open(tmp_path / "h.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"epoch": "1", "reward": "0.5", "val_reward": ""},
                    {"epoch": "2", "reward": "0.75", "val_reward": "0.25"}]


def test_disk_cache_answers_a_repeated_call_without_the_backend(tmp_path):
    lm = ScriptedLanguageModel(lambda m, o: {"answer": "cached"}, cache_dir=str(tmp_path / "cache"))
    program = build(lm)
    program.compile(reward=rewards.ExactMatch())
    xs, ys = make_data(2)
    first = asyncio.run(program.evaluate(xs, ys, seed=1))
    again = asyncio.run(program.evaluate(xs, ys, seed=1))
    assert first == again
    assert lm.usage.calls == 2 and lm.usage.cache_hits == 2 and len(lm.requests) == 2
    asyncio.run(program.evaluate(xs, ys, seed=2))  # another seed is another request
    assert lm.usage.calls == 4


@pytest.mark.parametrize("settings, key", [({"temperature": "abc"}, "temperature"), ({"max_tokens": 0}, "max_tokens"),
                                           ({"temprature": 0.1}, "temprature"), ({"concurrency": 0}, "concurrency")])
def test_bad_language_model_settings_are_user_errors(settings, key):
    from promptrl import LanguageModel

    with pytest.raises(UserError, match=key):
        LanguageModel("local/smollm2-135m", **settings)


def test_errors_are_classified_by_what_they_are_not_when_they_happen():
    from promptrl.errors import LanguageModelUnavailable

    class BadRequestError(Exception):  # a per-request refusal, as litellm and the lean client name it
        status_code = 400

    def run(failing_call: int, error: Exception):
        calls = []

        def respond(messages, output_model):
            calls.append(1)
            if len(calls) == failing_call:
                raise error
            return {"answer": "label 0"}

        lm = ScriptedLanguageModel(respond, concurrency=1, num_retries=0)
        program = build(lm)
        program.compile(reward=rewards.ExactMatch())
        xs, ys = make_data(3)
        return asyncio.run(program.evaluate(xs, ys)), lm

    # A setting that cannot work (a model file that does not load) stops the run, first call or later.
    for failing_call in (1, 2):
        with pytest.raises(LanguageModelUnavailable, match="cannot be used .*Failed to load model"):
            run(failing_call, ValueError("Failed to load model from file"))
    # A request refused (context length) is one failed prediction, first call or later.
    for failing_call in (1, 2):
        logs, lm = run(failing_call, BadRequestError("maximum context length exceeded"))
        assert (logs["failures"], logs["infra_failures"], lm.usage.failures) == (1, 0, 1)


def test_an_output_cut_at_max_tokens_says_so():
    lm = ScriptedLanguageModel(lambda m, o: '{"answer": "a very long answer that never clo', max_tokens=5)
    program = build(lm)
    program.compile(reward=rewards.ExactMatch())
    xs, ys = make_data(1)
    logs, predictions = asyncio.run(evaluate(program, xs, ys, return_predictions=True))
    assert logs["failures"] == 1 and "max_tokens=5" in predictions[0].error
