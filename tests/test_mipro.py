"""MIPRO: proposals, a seeded TPE search over instruction x demonstration set, full-validation selection."""

import asyncio
import json

import pytest

from promptrl import Generator, Input, Program, rewards
from promptrl.errors import UserError
from promptrl.optimizers import MIPRO
from promptrl.testing import Answer, Question, ScriptedLanguageModel, last_user_input, toy_data

data = toy_data


def student(needs_demos=True, good_word="MAGIC"):
    """Right only with demonstrations in the prompt (a model at 0 % zero-shot) and, when given,
    with `good_word` in its instruction; counts its calls."""
    calls = []

    def respond(messages, model):
        calls.append(messages)
        has_demos = len(messages) > 2
        good = (has_demos or not needs_demos) and (good_word is None or good_word in messages[0]["content"])
        q = last_user_input(messages)["question"]
        return {"answer": q.replace("q", "a") if good else "wrong"}
    lm = ScriptedLanguageModel(respond, model="student")
    lm.calls = calls
    return lm


def teacher(instructions=("try MAGIC", "plain", "other")):
    calls = []

    def respond(messages, model):
        calls.append(messages[-1]["content"])
        if "summary" in model.model_fields:
            return {"summary": "Map qN to aN."}
        return {"instruction": instructions[(len(calls) - 2) % len(instructions)]}
    lm = ScriptedLanguageModel(respond, model="teacher")
    lm.calls = calls
    return lm


def program_of(lm):
    x0 = Input(Question, name="q")
    return Program(x0, Generator(Answer, lm, instructions="start", name="answer")(x0), name="p")


def fit(program, optimizer, n_train=6, n_val=6, epochs=1, batch_size=3):
    program.compile(reward=rewards.ExactMatch(), optimizer=optimizer)
    x, y = data(n_train + n_val)
    return asyncio.run(program.fit(x[:n_train], y[:n_train], validation_data=(x[n_train:], y[n_train:]),
                                   epochs=epochs, batch_size=batch_size))


def test_mipro_finds_instruction_and_labelled_demos_on_a_task_the_model_gets_zero_right():
    program = program_of(student())
    mipro = MIPRO(teacher(), nb_instructions=3, nb_demo_sets=3, nb_trials=12, minibatch_size=3, seed=0)
    history = fit(program, mipro)
    generator = program.get_module("answer")
    assert "MAGIC" in generator.instructions and len(generator.examples) == 3
    assert history.history["val_reward"][-1] == 1.0  # the search's choice is what fit validated
    assert mipro.full_scores[mipro.key(mipro.chosen)] == 1.0
    assert len(mipro.trials) == 12 and mipro.candidates["answer"]["instructions"][0] == "start"


def test_mipro_search_is_seeded_and_reproducible():
    def run(seed):
        mipro = MIPRO(teacher(), nb_instructions=3, nb_demo_sets=3, nb_trials=8, minibatch_size=2, seed=seed)
        fit(program_of(student()), mipro)
        return [t["params"] for t in mipro.trials], mipro.chosen

    assert run(0) == run(0)
    assert run(0)[0] != run(1)[0]  # another seed, another search


def test_mipro_never_keeps_prompts_below_the_starting_ones_on_the_whole_validation_split():
    # The model is right zero-shot with the starting instruction, wrong with any demonstrations.
    def respond(messages, model):
        q = last_user_input(messages)["question"]
        return {"answer": q.replace("q", "a") if len(messages) == 2 else "wrong"}
    program = program_of(ScriptedLanguageModel(respond, model="student"))
    mipro = MIPRO(teacher(("x", "y")), nb_instructions=2, nb_demo_sets=3, nb_trials=6, minibatch_size=2, nb_full=3)
    fit(program, mipro)
    assert program.get_module("answer").examples == []  # the starting (zero-shot) prompts won
    assert mipro.chosen["answer.demos"] == 0


def test_mipro_state_round_trips_and_a_restored_search_continues():
    program = program_of(student())
    mipro = MIPRO(teacher(), nb_instructions=3, nb_demo_sets=3, nb_trials=4, minibatch_size=2)
    fit(program, mipro)
    state = json.loads(json.dumps(mipro.get_state()))  # JSON only
    restored = MIPRO(teacher(), nb_instructions=3, nb_demo_sets=3, nb_trials=4, minibatch_size=2)
    restored.set_state(state)
    assert restored.get_state() == mipro.get_state()
    restored_teacher = restored.language_model
    fit(program, restored)  # a second epoch of the restored search: trials are added, no new proposals
    assert len(restored.trials) == 8 and restored.candidates == mipro.candidates
    assert not any("Write one new instruction" in c for c in restored_teacher.calls)


def test_mipro_planned_calls_bound_the_calls_made():
    lm, tlm = student(), teacher()
    program = program_of(lm)
    mipro = MIPRO(tlm, nb_instructions=3, nb_demo_sets=3, nb_trials=5, minibatch_size=2, nb_full=2)
    n_train, n_val, batch_size, epochs = 6, 6, 3, 2
    fit(program, mipro, n_train, n_val, epochs, batch_size)
    plan = mipro.planned_calls(epochs * 2, 1, n_val, batch_size, epochs)
    scoring = lm.usage_by_role["optimizer_scoring"].calls
    assert len(tlm.calls) <= plan["teacher"] and scoring <= plan["scoring"]
    assert scoring >= epochs * 5 * 2  # every trial ran its minibatch


def test_mipro_checks_its_settings():
    with pytest.raises(UserError, match="MIPRO needs an optimizer language_model"):
        MIPRO(None)
    with pytest.raises(UserError, match="nb_full"):  # without a challenger the search would change nothing
        MIPRO(teacher(), nb_full=0)
    with pytest.raises(UserError, match="demos='all' is not one of"):
        MIPRO(teacher(), demos="all")
    program = program_of(student())
    program.compile(reward=rewards.ExactMatch(), optimizer=MIPRO(teacher()))
    x, y = data(4)
    with pytest.raises(UserError, match="set dataset.val_size > 0"):
        asyncio.run(program.fit(x, y, epochs=1))
