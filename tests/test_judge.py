"""LMAsJudge: an LM scores predictions against criteria (verdict, scale, cache, accounting, failures,
config, a CLI run)."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from promptrl import DataModel, Field, Generator, Input, Program, UserError
from promptrl.engine.budget import Budget
from promptrl.errors import BudgetReached, PredictionError
from promptrl.rewards import LMAsJudge, Reward, Verdict
from promptrl.testing import ScriptedLanguageModel, last_user_input, sentiment_student
from promptrl.trainer import Prediction, evaluate, score_one


class Question(DataModel):
    text: str = Field(description="a question")


class Answer(DataModel):
    answer: str = Field(description="the answer")


def judge_lm(scores, critique="looks {n}"):
    """A scripted judge answering the scores of `scores` in turn (an int, or a str reply as is)."""
    replies = iter(scores)

    def respond(messages, output_model):
        assert output_model is Verdict
        reply = next(replies)
        return reply if isinstance(reply, str) else {"critique": critique.format(n=reply), "score": reply}

    return ScriptedLanguageModel(respond)


def judged(judge, target="a", prediction="b", x=None):
    return asyncio.run(judge.scored(Answer(answer=target), Answer(answer=prediction), x=x))


# ---- verdict, scale, feedback --------------------------------------------------------------------------------
def test_scores_one_to_five_map_linearly_to_zero_one_and_the_critique_is_the_feedback():
    lm = judge_lm([1, 2, 3, 4, 5])
    judge = LMAsJudge("same answer", lm)
    results = [judged(judge, prediction=f"p{i}") for i in range(5)]
    assert [r.score for r in results] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [r.feedback for r in results] == [f"looks {n}" for n in range(1, 6)]
    assert len(lm.requests) == 5 and lm.usage.calls == 5


def test_other_scales_and_scores_off_the_scale_are_clipped_and_noted():
    assert [judged(LMAsJudge("c", judge_lm([s]), scale=[0, 1])).score for s in (0, 1)] == [0.0, 1.0]
    assert judged(LMAsJudge("c", judge_lm([7]), scale=10)).score == pytest.approx(6 / 9)
    high = judged(LMAsJudge("c", judge_lm([9])))
    assert high.score == 1.0 and "judge score 9 is off the scale 1..5; clipped to 5" in high.feedback
    low = judged(LMAsJudge("c", judge_lm([0])))
    assert low.score == 0.0 and "clipped to 1" in low.feedback
    for bad in (1, [3, 1], [0, 1, 2], True, "5"):
        with pytest.raises(UserError, match="scale"):
            LMAsJudge("c", judge_lm([]), scale=bad)
    with pytest.raises(UserError, match="criteria"):
        LMAsJudge("  ", judge_lm([]))


def test_the_judge_sees_criteria_target_prediction_and_input_on_the_kept_fields():
    lm = judge_lm([4])
    judge = LMAsJudge("be exact", lm, in_mask=["answer"])
    asyncio.run(judge.scored({"answer": "a", "why": "x"}, {"answer": "b", "why": "y"}, x=Question(text="q?")))
    system, user = lm.requests[0]
    assert "be exact" in system["content"] and "from 1" in system["content"] and "to 5" in system["content"]
    assert last_user_input(lm.requests[0]) == {"input": {"text": "q?"}, "expected_output": {"answer": "a"},
                                               "prediction": {"answer": "b"}}
    no_input = LMAsJudge("be exact", judge_lm([4]), include_input=False)
    asyncio.run(no_input.scored(Answer(answer="a"), Answer(answer="b"), x=Question(text="q?")))
    assert "input" not in last_user_input(no_input.language_model.requests[0])
    assert not no_input.uses_input and judge.uses_input


def test_a_failed_prediction_and_an_exact_match_need_no_call():
    lm = judge_lm([])
    judge = LMAsJudge("c", lm)
    assert asyncio.run(judge.scored(Answer(answer="a"), None)).score == 0.0
    assert judged(judge, "18", " 18 ") == (1.0, "matches the target")
    assert lm.requests == []
    strict = LMAsJudge("c", judge_lm([3]), skip_exact=False)  # the judge may still dock points
    assert judged(strict, "a", "a").score == 0.5


# ---- cache ---------------------------------------------------------------------------------------------------
def test_the_same_judgement_is_asked_once_and_a_different_input_is_asked_again():
    lm = judge_lm([5, 2, 3])
    judge = LMAsJudge("c", lm)
    assert judged(judge, x=Question(text="q1")).score == 1.0
    assert judged(judge, x=Question(text="q1")).score == 1.0  # from memory: no call
    assert len(lm.requests) == 1
    assert judged(judge, x=Question(text="q2")).score == 0.25  # another input: another judgement
    assert judged(judge, prediction="c", x=Question(text="q1")).score == 0.5
    assert len(lm.requests) == 3


def test_identical_judgements_in_flight_share_one_call():
    lm = ScriptedLanguageModel(lambda m, o: {"critique": "ok", "score": 4}, delay=lambda m: 0.05, concurrency=4)
    judge = LMAsJudge("c", lm)

    async def many():
        return await asyncio.gather(*(judge.scored(Answer(answer="a"), Answer(answer="b")) for _ in range(5)))

    assert [r.score for r in asyncio.run(many())] == [0.75] * 5
    assert len(lm.requests) == 1


def test_a_failed_judgement_is_not_cached():
    lm = judge_lm(["not json", 5])
    judge = LMAsJudge("c", lm)
    with pytest.raises(PredictionError):
        judged(judge)
    assert judged(judge).score == 1.0 and len(lm.requests) == 2


def test_the_reply_cache_replays_a_judgement_for_a_new_judge(tmp_path):
    first = judge_lm([4])
    first.use_reply_cache(tmp_path / "cache")
    assert judged(LMAsJudge("c", first)).score == 0.75
    again = judge_lm([1])  # would answer otherwise: the reply comes from the cache
    again.use_reply_cache(tmp_path / "cache")
    assert judged(LMAsJudge("c", again)).score == 0.75
    assert again.requests == [] and again.usage.cache_hits == 1


# ---- accounting and budget -----------------------------------------------------------------------------------
def test_judge_calls_are_accounted_under_the_role_judge():
    lm = judge_lm([3, 4])
    judge = LMAsJudge("c", lm)
    judged(judge, prediction="b")
    judged(judge, prediction="c")
    assert lm.usage.calls == 2 and lm.usage_by_role["judge"].calls == 2


def test_a_budget_role_limit_on_the_judge_stops_its_calls():
    lm = judge_lm([3, 3, 3])
    budget = Budget(roles={"judge": {"max_calls": 2}})
    budget.watch("judge", lm)
    budget.validate()
    judge = LMAsJudge("c", lm)
    judged(judge, prediction="b")
    judged(judge, prediction="c")
    with pytest.raises(BudgetReached, match="judge"):
        judged(judge, prediction="d")
    assert lm.usage.calls == 2


# ---- in the trainer ------------------------------------------------------------------------------------------
def make_program():
    student = ScriptedLanguageModel(lambda m, o: {"answer": last_user_input(m)["text"].upper()}, concurrency=2)
    x0 = Input(Question)
    return Program(x0, Generator(Answer, student, name="gen")(x0), name="shouter"), student


def test_evaluate_judges_each_prediction_with_its_input_and_keeps_the_critique():
    program, _ = make_program()

    def respond(messages, output_model):
        case = last_user_input(messages)
        good = case["prediction"]["answer"].lower() == case["expected_output"]["answer"]
        return {"critique": f"{case['input']['text']}: {'fine' if good else 'wrong'}", "score": 5 if good else 1}

    lm = ScriptedLanguageModel(respond, delay=lambda m: 0.01 * (5 - len(m[-1]["content"]) % 5), concurrency=3)
    program.compile(reward=LMAsJudge("same answer, any case", lm))
    xs = [Question(text=t) for t in ("a", "b", "c", "d")]
    ys = [Answer(answer=t) for t in ("a", "x", "c", "y")]
    logs, predictions = asyncio.run(evaluate(program, xs, ys, return_predictions=True))
    assert [p.reward for p in predictions] == [1.0, 0.0, 1.0, 0.0] and logs["reward"] == 0.5
    assert [p.feedback for p in predictions] == ["a: fine", "b: wrong", "c: fine", "d: wrong"]
    assert lm.usage_by_role["judge"].calls == 4


def test_the_judge_scores_each_prediction_while_the_program_still_predicts():
    """No barrier between predicting and judging: the first verdict is asked for before the
    program's last call is made, in evaluate and in a training step."""
    from promptrl.optimizers import RandomFewShot

    started = []  # (who, input) in the order the calls start

    def student_delay(messages):
        started.append(("program", last_user_input(messages)["text"]))
        return 0.02

    def judge_delay(messages):
        started.append(("judge", last_user_input(messages)["input"]["text"]))
        return 0.02

    student = ScriptedLanguageModel(lambda m, o: {"answer": last_user_input(m)["text"].upper()}, student_delay,
                                    concurrency=2)
    judge = ScriptedLanguageModel(lambda m, o: {"critique": "ok", "score": 5}, judge_delay, concurrency=2)
    x0 = Input(Question)
    program = Program(x0, Generator(Answer, student, name="gen")(x0))
    program.compile(reward=LMAsJudge("same answer", judge, skip_exact=False), optimizer=RandomFewShot(k=1))
    xs = [Question(text=t) for t in "abcdefgh"]
    ys = [Answer(answer=t.upper()) for t in "abcdefgh"]
    for run in (lambda: evaluate(program, xs, ys), lambda: program.fit(xs, ys, batch_size=8)):
        started.clear()
        program.reward.judgements.clear()  # judged afresh, not from the first run's verdicts
        asyncio.run(run())
        who = [w for w, _ in started]
        assert who.count("program") == 8 and who.count("judge") == 8
        assert who.index("judge") < len(who) - 1 - who[::-1].index("program"), who


def cut_verdicts_for(*texts):
    """A judge whose verdict is cut short (invalid JSON) on these inputs and a 5 on the others."""
    def respond(messages, output_model):
        if last_user_input(messages)["input"]["text"] in texts:
            return '{"critique": "cut'
        return {"critique": "fine", "score": 5}
    return ScriptedLanguageModel(respond)


def test_an_invalid_verdict_leaves_the_example_unscored_never_a_zero():
    program, _ = make_program()
    lm = cut_verdicts_for("a", "b")
    program.compile(reward=LMAsJudge("c", lm, skip_exact=False))
    xs = [Question(text="a"), Question(text="b"), Question(text="c")]
    ys = [Answer(answer="A"), Answer(answer="B"), Answer(answer="C")]
    logs, predictions = asyncio.run(evaluate(program, xs, ys, return_predictions=True))
    unscored = [p for p in predictions if p.error]
    assert len(unscored) == 2
    for p in unscored:  # the program's answer was valid; the judge gave no verdict: left out, counted
        assert p.y_pred is not None and p.failure == "infrastructure"
        assert p.error.startswith("lm_judge: ") and p.feedback == "could not be scored"
    assert logs["reward"] == 1.0 and logs["failures"] == 0 and logs["infra_failures"] == 2


def test_a_judge_metric_that_cannot_score_is_left_out_of_its_mean():
    from promptrl.rewards import ExactMatch

    program, _ = make_program()
    lm = cut_verdicts_for("a")
    program.compile(reward=ExactMatch(), metrics=[LMAsJudge("c", lm, skip_exact=False, name="judge")])
    xs, ys = [Question(text="a"), Question(text="b")], [Answer(answer="A"), Answer(answer="B")]
    logs = asyncio.run(evaluate(program, xs, ys))
    assert logs["judge"] == 1.0 and logs["reward"] == 1.0 and logs["infra_failures"] == 0


def test_a_judge_that_gets_no_answer_leaves_the_example_out():
    program, _ = make_program()

    def respond(messages, output_model):
        if "b" in last_user_input(messages)["input"]["text"]:
            raise TimeoutError("judge timed out")
        return {"critique": "ok", "score": 5}

    lm = ScriptedLanguageModel(respond, num_retries=0)
    program.compile(reward=LMAsJudge("c", lm, skip_exact=False))
    xs, ys = [Question(text="a"), Question(text="b")], [Answer(answer="A"), Answer(answer="B")]
    logs, predictions = asyncio.run(evaluate(program, xs, ys, return_predictions=True))
    assert predictions[1].failure == "infrastructure" and "judge timed out" in predictions[1].error
    assert logs["reward"] == 1.0 and logs["infra_failures"] == 1


def test_rewards_without_an_input_argument_still_work():
    class Old(Reward):  # a user reward written before `x`: scored(y_true, y_pred) only
        async def scored(self, y_true, y_pred):
            return (await super().scored(y_true, y_pred))

        async def score(self, y_true, y_pred):
            return 1.0

    program, _ = make_program()
    program.compile(reward=Old())
    pred = Prediction(index=0, x=Question(text="a"), y_pred=Answer(answer="A"))
    asyncio.run(score_one(program, pred, Answer(answer="A")))
    assert pred.reward == 1.0


# ---- config --------------------------------------------------------------------------------------------------
@pytest.fixture
def compose():
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from promptrl.cli import config_dir

    def make(*overrides):
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = hydra_compose("train", overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return cfg

    return make


def test_config_null_language_model_is_a_temperature_zero_copy_of_the_program_model(compose):
    from promptrl.experiment.build import build_scorers, judge_models

    program_lm = sentiment_student(temperature=0.7, max_tokens=96)
    reward, metrics = build_scorers(compose("reward=lm_judge", "metrics=judge"), program_lm)
    assert isinstance(reward, LMAsJudge)
    assert (reward.low, reward.high, reward.in_mask, reward.skip_exact) == (1, 5, ["answer"], True)
    assert "same answer" in reward.criteria
    judge = reward.language_model
    assert judge is not program_lm and judge.model == "scripted" and judge.temperature == 0.0
    assert judge.max_tokens == 256
    assert metrics[1].language_model is judge  # one judge LM per run, shared
    assert judge_models([reward, *metrics], [program_lm]) == {"judge": judge}


def test_config_null_language_model_is_the_optimizer_model_when_one_is_set(compose):
    from promptrl.experiment.build import build_scorers

    cfg = compose("reward=lm_judge", "+optimizer_language_model={model:openai/gpt-4o-mini,temperature:0.7}",
                  "+optimizer_language_model._target_=promptrl.LanguageModel")
    reward, _ = build_scorers(cfg, sentiment_student())
    assert reward.language_model.model == "openai/gpt-4o-mini" and reward.language_model.temperature == 0.0


def test_config_without_a_program_model_builds_the_configured_one(compose):
    from promptrl.experiment.build import build_scorers

    reward, _ = build_scorers(compose("reward=lm_judge", "reward.scale=[0,1]", "reward.criteria=short"))
    assert (reward.low, reward.high, reward.criteria) == (0, 1, "short")
    assert reward.language_model.model == "local/smollm2-135m" and reward.language_model.temperature == 0.0


# ---- a run through the CLI -----------------------------------------------------------------------------------
def scripted_judge(**settings) -> ScriptedLanguageModel:
    """A judge for the sentiment task: 5 when the prediction's label is the target's, else 1."""
    def respond(messages, output_model):
        case = last_user_input(messages)
        good = case["prediction"] == case["expected_output"]
        return {"critique": "right label" if good else "wrong label", "score": 5 if good else 1}

    settings["model"] = "scripted-judge"
    return ScriptedLanguageModel(respond, **settings)


SCRIPTED = ["language_model._target_=promptrl.testing.sentiment_student", "--no-progress",
            "nb_runs=1", "epochs=1", "batch_size=4", "dataset.train_size=8", "dataset.val_size=4",
            "dataset.test_size=6", "reward=lm_judge", "reward.skip_exact=false",
            f"reward.language_model={{_target_:{__name__}.scripted_judge}}"]


def test_train_with_an_lm_judge_accounts_it_as_its_own_role(tmp_path):
    from promptrl.cli import app

    runner = CliRunner()
    plan = runner.invoke(app, ["train", "--dry-run", "+optimizer=random_few_shot", *SCRIPTED,
                               f"hydra.run.dir={tmp_path / 'plan'}"])
    assert plan.exit_code == 0, plan.output
    planned = json.loads((tmp_path / "plan" / "plan.json").read_text())
    # every scored prediction: baseline 6 + fit 8 + validation 2 * 4 + final 6
    assert planned["calls"]["judge"] == 28 and planned["models"]["judge"] == "scripted-judge"
    result = runner.invoke(app, ["train", "+optimizer=random_few_shot", *SCRIPTED, "+budget.roles.judge.max_calls=100",
                                 f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 0, result.output
    usage = json.loads((tmp_path / "run" / "usage.json").read_text())
    judge = usage["language_models"]["judge"]
    assert judge["model"] == "scripted-judge" and 0 < judge["calls"] <= 28 and judge["failures"] == 0
    assert usage["language_models"]["program"]["calls"] == 6 + 8 + 8 + 6
    assert "judge LM scripted-judge" in result.output
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert final["mean"]["reward"] == 1.0


def test_a_judge_watched_as_a_reward_metric_still_sees_the_input():
    from promptrl.metrics import RewardMetric

    lm = judge_lm([5])
    metric = RewardMetric(LMAsJudge("be exact", lm), name="judged")
    prediction = Prediction(index=0, x=Question(text="q?"), y_pred=Answer(answer="b"))
    program, _ = make_program()
    program.compile(metrics=[metric])
    asyncio.run(score_one(program, prediction, Answer(answer="a")))
    assert prediction.scores["judged"] == 1.0
    assert last_user_input(lm.requests[0])["input"] == {"text": "q?"}
