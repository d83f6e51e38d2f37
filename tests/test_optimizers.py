"""OPRO, FewShotOPRO and TextGrad with scripted program and optimizer LMs."""

import asyncio
import json

import pytest

from promptrl import Generator, Input, Program, rewards
from promptrl.optimizers import OPRO, FewShotOPRO, TextGrad
from promptrl.testing import Answer, Notes, Question, ScriptedLanguageModel, last_user_input, toy_data

data = toy_data


def student(good_words=("MAGIC",)):
    """Answers right only when its system prompt (instruction) holds one of `good_words`."""
    def respond(messages, model):
        if model is Notes or "notes" in model.model_fields:
            return {"notes": "some notes"}
        good = any(w in messages[0]["content"] for w in good_words)
        q = last_user_input(messages)["question"]
        return {"answer": q.replace("q", "a") if good else "wrong"}
    return ScriptedLanguageModel(respond, model="student")


def teacher(instructions, num_retries=0):
    """Proposes the scripted instructions in turn; critiques are echoed with a tag. A scripted
    exception is one failed call (no retries unless asked)."""
    queue = list(instructions)

    def respond(messages, model):
        if "instruction" in model.model_fields:
            item = queue.pop(0) if queue else "fallback instruction"
            if isinstance(item, Exception):
                raise item
            return {"instruction": item}
        return {"critique": "CRITIQUE: " + messages[-1]["content"][:40]}
    return ScriptedLanguageModel(respond, model="teacher", num_retries=num_retries)


def one_generator_program(lm, instructions="start"):
    x0 = Input(Question, name="q")
    out = Generator(Answer, lm, instructions=instructions, name="answer")(x0)
    return Program(x0, out, name="p")


def fit(program, optimizer, n_train=4, n_val=4, batch_size=4, epochs=1):
    program.compile(reward=rewards.ExactMatch(), optimizer=optimizer)
    x, y = data(n_train + n_val)
    return asyncio.run(program.fit(x[:n_train], y[:n_train], validation_data=(x[n_train:], y[n_train:]),
                                   epochs=epochs, batch_size=batch_size))


def test_opro_meta_prompt_lists_best_past_instructions_sorted_by_reward():
    opro = OPRO(teacher([]), max_history=3)
    program = one_generator_program(student())
    generator = program.get_module("answer")
    generator.input_data_model = Question
    for instruction, reward in [("i-low", 0.1), ("i-top", 0.9), ("i-mid", 0.5), ("i-worst", 0.0), ("i-high", 0.7)]:
        opro.record(generator, instruction, reward)
    text = opro.meta_prompt(generator, [])[-1]["content"]
    shown = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("instruction: ")]
    assert shown == ["i-mid", "i-high", "i-top"]  # the 3 best, ascending: best last


def test_opro_keeps_only_a_better_candidate():
    program = one_generator_program(student())
    opro = OPRO(teacher(["worse idea", "use MAGIC", "another bad one"]), nb_candidates=3, val_batch_size=4)
    fit(program, opro)
    assert program.get_module("answer").instructions == "use MAGIC"
    scored = {e["instruction"]: e["reward"] for e in opro.history["answer"]}
    assert scored == {"start": 0.0, "worse idea": 0.0, "use MAGIC": 1.0, "another bad one": 0.0}


def test_opro_does_not_replace_with_equal_or_worse_candidates():
    program = one_generator_program(student(), instructions="MAGIC start")
    opro = OPRO(teacher(["bad one", "also MAGIC"]), nb_candidates=2)
    fit(program, opro)
    assert program.get_module("answer").instructions == "MAGIC start"


def test_optimizer_lm_failures_are_counted_and_skipped():
    program = one_generator_program(student())
    class ServiceUnavailableError(Exception):  # a transient provider error, as litellm names it
        pass

    lm = teacher([ServiceUnavailableError("provider down"), "use MAGIC"])
    opro = OPRO(lm, nb_candidates=2)
    history = fit(program, opro)
    assert opro.failures == 1 and lm.usage.failures == 1
    assert program.get_module("answer").instructions == "use MAGIC"
    assert history.history["val_reward"] == [1.0]


def test_fewshot_opro_sets_examples_and_instructions_and_saves_state(tmp_path):
    program = one_generator_program(student(good_words=("MAGIC", "start")))
    opro = FewShotOPRO(teacher(["MAGIC two"]), k=2, k_best=3, nb_candidates=1)
    fit(program, opro)
    generator = program.get_module("answer")
    assert len(generator.examples) == 2
    program.save(tmp_path / "p.program.json")
    state = json.loads((tmp_path / "p.program.json").read_text())["optimizer"]
    assert state["class"] == "FewShotOPRO" and state["state"]["step"] == 1
    assert state["state"]["history"]["answer"] and state["state"]["few_shot"]["pool"]["answer"]


def two_generator_program(lm):
    x0 = Input(Question, name="q")
    notes = Generator(Notes, lm, instructions="notes start", name="notes")(x0)
    out = Generator(Answer, lm, instructions="answer start", name="answer")([x0, notes])
    return Program(x0, out, name="two")


def test_textgrad_feedback_reaches_the_upstream_generator():
    lm = teacher(["rewritten answer", "rewritten notes"])
    program = two_generator_program(student())
    tg = TextGrad(lm, batch=2)
    fit(program, tg, batch_size=4)
    prompts = [m[-1]["content"] for m in lm.requests]
    backward = [p for p in prompts if 'should change its output to help "answer"' in p]
    assert len(backward) == 2  # one per critiqued prediction, from "answer" up to "notes"
    assert all("CRITIQUE" in p for p in backward)  # it carries the downstream critique
    rewrites = [p for p in prompts if p.startswith("Current instruction")]
    assert any('"notes"' in p for p in rewrites) and any('"answer"' in p for p in rewrites)


def test_textgrad_reverts_an_update_that_lowers_validation_reward():
    program = one_generator_program(student(), instructions="MAGIC but imperfect")
    tg = TextGrad(teacher(["a worse instruction"]), batch=3, reward_threshold=1.5)  # everything is "poor"
    fit(program, tg)
    assert program.get_module("answer").instructions == "MAGIC but imperfect"
    assert tg.updates[0]["accepted"] is False and tg.updates[0]["new_reward"] < tg.updates[0]["old_reward"]


def test_textgrad_accepts_an_update_that_does_not_lower_validation_reward():
    program = one_generator_program(student())
    tg = TextGrad(teacher(["now with MAGIC"]), batch=3)
    fit(program, tg)
    assert program.get_module("answer").instructions == "now with MAGIC"
    assert tg.updates[0]["accepted"] is True


@pytest.mark.parametrize("cls", [OPRO, TextGrad])
def test_instruction_optimizers_need_a_language_model(cls):
    from promptrl.errors import UserError

    with pytest.raises(UserError):
        cls(None)


def test_opro_meta_prompt_shows_the_mean_score_of_an_instruction():
    opro = OPRO(teacher([]))
    generator = one_generator_program(student()).get_module("answer")
    generator.input_data_model = Question
    for reward in (1.0, 0.0, 0.5):  # one lucky minibatch must not make it look best forever
        opro.record(generator, "lucky", reward)
    opro.record(generator, "steady", 0.6)
    assert [(e["instruction"], e["reward"]) for e in opro.best_history("answer")] == [("lucky", 0.5), ("steady", 0.6)]


def test_opro_does_not_pay_twice_for_the_same_candidate():
    program = one_generator_program(student())
    lm = teacher(["same idea", "same idea", "start"])
    opro = OPRO(lm, nb_candidates=3)
    fit(program, opro)
    scored = [e["instruction"] for e in opro.history["answer"]]
    assert scored == ["start", "same idea"]  # the repeat and the current instruction are not re-scored


def test_random_few_shot_samples_beyond_the_first_correct_inputs_on_ties():
    from promptrl.optimizers import RandomFewShot
    from promptrl.trainer import Prediction

    optimizer = RandomFewShot(k=1, k_best=2, seed=0)
    optimizer.record([Prediction(index=i, x=None, reward=1.0,
                                 trace=[{"module": "g", "input": {"q": i}, "output": {"a": i}}]) for i in range(20)])
    chosen = {e["input"]["q"] for _ in range(10) for e in optimizer.best("g")}
    assert len(chosen) > 2  # ties are broken at random, not always the first two recorded


# ---- demonstrations from labels ----------------------------------------------------------------
def never_right():
    """A model that gets every example wrong: no prediction is ever rewarded."""
    return ScriptedLanguageModel(lambda messages, model: {"answer": "wrong"}, model="never-right")


def test_labelled_demos_fill_in_when_no_prediction_is_rewarded():
    from promptrl.optimizers import RandomFewShot

    program = one_generator_program(never_right())
    fit(program, RandomFewShot(k=3, demos="mixed"), n_train=6)
    examples = program.get_module("answer").examples
    assert len(examples) == 3
    for example in examples:  # each demo is a training input with its own ground-truth answer
        assert example["output"]["answer"] == example["input"]["question"].replace("q", "a")
    program = one_generator_program(never_right())
    fit(program, RandomFewShot(k=3, demos="predictions"), n_train=6)
    assert program.get_module("answer").examples == []  # today's behaviour, kept under demos=predictions


def test_mixed_demos_put_rewarded_predictions_first_then_labels():
    from promptrl.optimizers import RandomFewShot
    from promptrl.trainer import Prediction

    optimizer = RandomFewShot(k=3, demos="mixed", seed=0)
    right = Prediction(index=0, x=Question(question="q0"), y_true=Answer(answer="a0"), reward=1.0,
                       trace=[{"module": "answer", "input": {"question": "q0"}, "output": {"answer": "a0"}}])
    wrong = [Prediction(index=i, x=Question(question=f"q{i}"), y_true=Answer(answer=f"a{i}"), reward=0.0,
                        trace=[{"module": "answer", "input": {"question": f"q{i}"}, "output": {"answer": "no"}}])
             for i in (1, 2, 3)]
    program = one_generator_program(never_right())
    optimizer.record([right, *wrong], program)
    chosen = optimizer.choose("answer")
    assert chosen[0] == {"input": {"question": "q0"}, "output": {"answer": "a0"}}
    assert [c["output"]["answer"] for c in chosen[1:]] == [c["input"]["question"].replace("q", "a") for c in chosen[1:]]
    assert "no" not in [c["output"]["answer"] for c in chosen]  # a wrong output is never shown
    assert len({c["input"]["question"] for c in chosen}) == 3  # the rewarded input is not repeated from labels


def test_labelled_demo_of_a_chain_of_thought_keeps_the_programs_reasoning_only_when_it_agrees():
    from promptrl.modules import ChainOfThought
    from promptrl.optimizers.demos import labelled_demo
    from promptrl.trainer import Prediction

    x0 = Input(Question, name="q")
    cot = ChainOfThought(Answer, never_right(), name="answer")
    Program(x0, cot(x0), name="p")

    def prediction(answer, trace=True):
        return Prediction(index=0, x=Question(question="q1"), y_true=Answer(answer="a1"), reward=0.0,
                          trace=[{"module": "answer", "input": {"question": "q1"},
                                  "output": {"thinking": "let me see", "answer": answer}}] if trace else [])

    right = labelled_demo(cot, prediction("a1"), program_input_only=True)
    assert right["output"] == {"thinking": "let me see", "answer": "a1"}  # field order of the output model
    assert list(right["output"]) == ["thinking", "answer"]
    # reasoning that led to another answer would contradict the label: left out
    assert labelled_demo(cot, prediction("wrong"), program_input_only=True)["output"] == {"answer": "a1"}
    # failed before the step: the program input, the labelled field only
    assert labelled_demo(cot, prediction("a1", trace=False), program_input_only=True) == {
        "input": {"question": "q1"}, "output": {"answer": "a1"}}


def test_mixed_demos_prefer_labels_to_partly_rewarded_predictions():
    from promptrl.optimizers import RandomFewShot
    from promptrl.trainer import Prediction

    optimizer = RandomFewShot(k=2, demos="mixed", seed=0)
    partial = Prediction(index=0, x=Question(question="q0"), y_true=Answer(answer="a0"), reward=0.6,
                         trace=[{"module": "answer", "input": {"question": "q0"}, "output": {"answer": "a0?"}}])
    other = Prediction(index=1, x=Question(question="q1"), y_true=Answer(answer="a1"), reward=0.0,
                       trace=[{"module": "answer", "input": {"question": "q1"}, "output": {"answer": "no"}}])
    optimizer.record([partial, other], one_generator_program(never_right()))
    chosen = optimizer.choose("answer")
    assert [c["output"]["answer"] for c in chosen] in (["a0", "a1"], ["a1", "a0"])  # labels, not "a0?"


def test_labelled_demos_only_for_generators_producing_the_program_output():
    from promptrl.optimizers import RandomFewShot

    def respond(messages, model):
        if "notes" in model.model_fields:
            return {"notes": "about " + last_user_input(messages)["question"]}
        return {"answer": "wrong"}
    lm = ScriptedLanguageModel(respond, model="chain")
    x0 = Input(Question, name="q")
    notes = Generator(Notes, lm, name="notes")(x0)
    out = Generator(Answer, lm, name="answer")(notes)
    program = Program(x0, out, name="chain")
    fit(program, RandomFewShot(k=2, demos="labels"), n_train=4)
    assert program.get_module("notes").examples == []  # no label exists for an intermediate step
    answer_examples = program.get_module("answer").examples
    assert len(answer_examples) == 2  # the answer step's own input (the notes) with the label
    assert all(e["output"]["answer"] == e["input"]["notes"].replace("about q", "a") for e in answer_examples)


def test_demos_source_is_checked_and_round_trips_through_state():
    from promptrl.errors import UserError
    from promptrl.optimizers import RandomFewShot

    with pytest.raises(UserError, match="demos='label' is not one of"):
        RandomFewShot(demos="label")
    program = one_generator_program(never_right())
    optimizer = RandomFewShot(k=2)
    fit(program, optimizer, n_train=4)
    state = json.loads(json.dumps(optimizer.get_state()))
    restored = RandomFewShot(k=2)
    restored.set_state(state)
    assert restored.labelled == optimizer.labelled and restored.get_config()["demos"] == "mixed"


# ---- reward feedback reaches the optimizer LM --------------------------------------------------
def test_exact_match_feedback_says_what_was_expected_and_what_came():
    reward = rewards.ExactMatch()
    scored = asyncio.run(reward.scored(Answer(answer="a1"), Answer(answer="wrong")))
    assert scored == (0.0, 'answer: expected a1, got wrong')
    assert asyncio.run(reward.scored(Answer(answer="a1"), Answer(answer="a1"))) == (1.0, "correct")
    assert asyncio.run(reward.scored(Answer(answer="a1"), None)).feedback == "no valid output was produced"


def test_reward_feedback_reaches_the_textgrad_critique_prompt():
    seen = []

    def respond(messages, model):
        seen.append(messages[-1]["content"])
        if "instruction" in model.model_fields:
            return {"instruction": "better"}
        return {"critique": "fix it"}

    program = one_generator_program(never_right())
    fit(program, TextGrad(ScriptedLanguageModel(respond, model="teacher"), batch=1), n_train=4)
    assert any("the reward's feedback: answer: expected a" in prompt and "got wrong" in prompt for prompt in seen)
