"""GEPA with scripted program and optimizer LMs: Pareto front, acceptance, reflection, merge, state, plan."""

import asyncio
import json
import random

from promptrl import Generator, Input, Program, rewards
from promptrl.optimizers import GEPA
from promptrl.testing import Answer, Notes, Question, ScriptedLanguageModel, last_user_input, toy_data

data = toy_data


def student():
    """Answers an even-numbered question right when its instruction holds EVEN, an odd-numbered one
    when it holds ODD or when its notes say ODD-HINT (the notes step writes that when its own
    instruction holds ODD): with two generators, each one fixes half of the examples."""
    def respond(messages, model):
        system = messages[0]["content"]
        if "notes" in model.model_fields:
            return {"notes": "ODD-HINT" if "ODD" in system else "none"}
        asked = last_user_input(messages)
        number = int(asked["question"][1:])
        good = ("EVEN" in system) if number % 2 == 0 else ("ODD" in system or asked.get("notes") == "ODD-HINT")
        return {"answer": f"a{number}" if good else "wrong"}
    return ScriptedLanguageModel(respond, model="student")


def teacher(instructions):
    """Proposes the scripted instructions in turn, then "fallback instruction"."""
    queue = list(instructions)

    def respond(messages, model):
        return {"instruction": queue.pop(0) if queue else "fallback instruction"}
    return ScriptedLanguageModel(respond, model="teacher")


def one_generator_program(lm, instructions="start"):
    x0 = Input(Question, name="q")
    return Program(x0, Generator(Answer, lm, instructions=instructions, name="answer")(x0), name="p")


def two_generator_program(lm):
    x0 = Input(Question, name="q")
    notes = Generator(Notes, lm, instructions="notes start", name="notes")(x0)
    out = Generator(Answer, lm, instructions="answer start", name="answer")([x0, notes])
    return Program(x0, out, name="two")


def fit(program, optimizer, n_train=4, n_val=4, batch_size=4, epochs=1):
    program.compile(reward=rewards.ExactMatch(), optimizer=optimizer)
    x, y = data(n_train + n_val)
    return asyncio.run(program.fit(x[:n_train], y[:n_train], validation_data=(x[n_train:], y[n_train:]),
                                   epochs=epochs, batch_size=batch_size))


def candidate(scores, parents=(), instructions=None):
    return {"instructions": instructions or {"answer": f"i{len(scores)}"}, "scores": list(scores),
            "parents": list(parents), "origin": "mutation", "module": "answer", "step": 0, "next_module": 0}


def test_pareto_front_keeps_a_specialist_and_drops_dominated_candidates():
    gepa = GEPA(teacher([]))
    gepa.pool = [candidate([1, 0, 0, 0]),   # best only on example 0, worst mean: kept
                 candidate([0, 1, 1, 1]),   # best on 1, 2, 3: kept, best mean
                 candidate([0, 1, 1, 0]),   # best on 1, 2, a subset of candidate 1's: dropped
                 candidate([1, 0, 0, 0])]   # the same as candidate 0, younger: dropped
    assert gepa.front() == {0: 1, 1: 3}
    assert gepa.best_index() == 1
    draws = [gepa.select_parent(random.Random(i)) for i in range(400)]
    assert set(draws) == {0, 1} and 0.15 < draws.count(0) / 400 < 0.35  # in proportion to 1:3


def test_a_mutation_that_does_not_strictly_improve_the_minibatch_is_rejected():
    program = one_generator_program(student(), instructions="EVEN start")
    gepa = GEPA(teacher(["EVEN too"]), minibatch_size=4)  # as good as the parent: not strictly better
    fit(program, gepa)
    (attempt,) = gepa.attempts
    assert attempt["instruction"] == "EVEN too" and attempt["child_sum"] == attempt["parent_sum"] == 2
    assert not attempt["accepted"] and len(gepa.pool) == 1
    assert program.get_module("answer").instructions == "EVEN start"


def test_the_reflection_prompt_shows_the_rewards_feedback():
    lm = teacher(["use EVEN"])
    program = one_generator_program(student())
    fit(program, GEPA(lm, minibatch_size=3))
    (prompt,) = [m[-1]["content"] for m in lm.requests]
    assert "start" in prompt and '"question": "q' in prompt  # the current instruction, the step's inputs
    assert "answer: expected a" in prompt and "got wrong" in prompt  # ExactMatch's feedback


def test_the_program_ends_with_the_best_mean_candidate():
    lm, optimizer_lm = student(), teacher(["use EVEN", "use EVEN and ODD"])
    program = one_generator_program(lm)
    gepa = GEPA(optimizer_lm, minibatch_size=3, max_steps=2)
    history = fit(program, gepa)
    assert [c["instructions"]["answer"] for c in gepa.pool] == ["start", "use EVEN", "use EVEN and ODD"]
    assert [c["parents"] for c in gepa.pool] == [[], [0], [1]]
    assert [gepa.mean_score(i) for i in range(3)] == [0.0, 0.5, 1.0]
    assert program.get_module("answer").instructions == "use EVEN and ODD"
    assert history.history["val_reward"] == [1.0]  # validation saw the prompts the optimizer chose
    # every step kept its child: the dry run's upper bound is met exactly
    plan = gepa.planned_calls(batches=1, generators=1, val_size=4, batch_size=4)
    assert (optimizer_lm.usage.calls, lm.usage_by_role["optimizer_scoring"].calls) == (2, 4 + 2 * (2 * 3 + 4))
    assert (plan["teacher"], plan["scoring"]) == (2, 4 + 2 * (2 * 3 + 4))


def run_parity(seed):
    program = one_generator_program(student())
    gepa = GEPA(teacher(["EVEN", "ODD", "EVEN or ODD x", "plain"]), minibatch_size=2, max_steps=2, seed=seed)
    fit(program, gepa, n_train=8, batch_size=4)
    return gepa.get_state()


def test_seeded_runs_are_reproducible():
    first, second = run_parity(0), run_parity(0)
    assert len(first["pool"]) > 1
    assert first["pool"] == second["pool"] and first["attempts"] == second["attempts"]


def test_state_round_trips_through_a_checkpoint_and_a_restored_optimizer_continues(tmp_path):
    program = one_generator_program(student())
    first = GEPA(teacher(["use EVEN"]), minibatch_size=3)
    fit(program, first)
    program.save(tmp_path / "p.program.json")
    saved = Program.load(tmp_path / "p.program.json", student()).saved_optimizer_state
    assert saved["class"] == "GEPA" and json.loads(json.dumps(saved["state"])) == saved["state"]

    resumed = Program.load(tmp_path / "p.program.json", student())
    restored = GEPA(teacher(["use EVEN and ODD"]), minibatch_size=3)
    restored.set_state(saved["state"])
    assert restored.get_state() == first.get_state()
    fit(resumed, restored)
    assert restored.step == first.step + 1 and restored.batches_seen == 2
    assert [c["instructions"] for c in restored.pool[:2]] == [c["instructions"] for c in first.pool]
    assert [c["origin"] for c in restored.pool] == ["seed", "mutation", "mutation"]  # seed not scored again
    assert restored.pool[2]["parents"] == [1]
    assert resumed.get_module("answer").instructions == "use EVEN and ODD"


def test_merge_takes_each_generator_from_the_candidate_that_changed_it():
    lm = student()
    program = two_generator_program(lm)
    gepa = GEPA(teacher([]), max_steps=1)
    seed = {"notes": "notes start", "answer": "answer start"}
    gepa.pool = [candidate([0, 0, 0, 0], instructions=seed),
                 candidate([0, 1, 0, 1], [0], {**seed, "notes": "notes ODD"}),
                 candidate([1, 0, 1, 0], [0], {**seed, "answer": "answer EVEN"})]
    gepa.merge_due = True
    fit(program, gepa)
    merged = gepa.pool[-1]
    assert merged["origin"] == "merge" and merged["parents"] == [1, 2]
    assert merged["instructions"] == {"notes": "notes ODD", "answer": "answer EVEN"}
    assert merged["scores"] == [1, 1, 1, 1] and gepa.merges == 1
    assert program.get_module("notes").instructions == "notes ODD"
    assert program.get_module("answer").instructions == "answer EVEN"
    plan = gepa.planned_calls(batches=1, generators=2, val_size=4, batch_size=4)
    assert lm.usage_by_role["optimizer_scoring"].calls == 4 * 2 <= plan["scoring"]  # the merge: Pareto set only


def test_planned_calls_bound_the_calls_made():
    lm, optimizer_lm = student(), teacher(["notes ODD", "answer EVEN", "notes ODD 2", "answer EVEN 2"])
    program = two_generator_program(lm)
    gepa = GEPA(optimizer_lm, minibatch_size=2, max_steps=2)
    fit(program, gepa, n_train=4, n_val=4, batch_size=2, epochs=2)
    plan = gepa.planned_calls(batches=4, generators=2, val_size=4, batch_size=2, epochs=2)
    made_teacher, made_scoring = optimizer_lm.usage.calls, lm.usage_by_role["optimizer_scoring"].calls
    assert len(gepa.pool) > 2 and any(a.get("skipped") for a in gepa.attempts)  # kept and skipped steps
    assert 0 < made_teacher <= plan["teacher"] and 0 < made_scoring <= plan["scoring"] and plan["upper_bound"]
