"""Programs: graph building, running, rendering prompts, and the JSON save/load round trip."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Literal

import pytest

from promptrl import (
    ChainOfThought, DataModel, Field, Generator, Input, LanguageModel, PredictionError, Program, UserError,
    optimizers, register_data_model, rewards,
)
from promptrl.data_model import import_path
from promptrl.optimizers import RandomFewShot
from promptrl.testing import ScriptedLanguageModel, last_user_input


class Question(DataModel):
    question: str = Field(description="The question")


class Answer(DataModel):
    answer: str = Field(description="The answer")


def echo_responder(messages, output_model):
    """Fills every output field from the input: str fields echo the question, others get fixed values."""
    data = last_user_input(messages)
    reply = {}
    for name, info in output_model.model_fields.items():
        if info.annotation is str:
            reply[name] = f"{name}:{data.get('question', '')}"
        elif info.annotation is float:
            reply[name] = 2.0
        elif info.annotation == list[str]:
            reply[name] = ["n1"]
        else:
            reply[name] = "ok"
    return reply


def simple_program(lm, **generator_kwargs):
    x0 = Input(Question)
    x1 = Generator(Answer, lm, **generator_kwargs)(x0)
    return Program(x0, x1, name="qa")


# ---- building and running ----------------------------------------------------------------------------

def test_await_on_module_call_returns_the_node_as_in_synalinks():
    lm = ScriptedLanguageModel(echo_responder)

    async def build():
        x0 = Input(Question)
        x1 = await Generator(Answer, lm)(x0)
        return Program(x0, x1)

    program = asyncio.run(build())
    assert [type(m) for m in program.modules] == [Generator]


def test_program_run_returns_validated_output():
    lm = ScriptedLanguageModel(echo_responder)
    program = simple_program(lm)
    out = asyncio.run(program(Question(question="2+2")))
    assert isinstance(out, DataModel)
    assert out.model_dump() == {"answer": "answer:2+2"}
    # also accepts a plain dict
    assert asyncio.run(program({"question": "q"})).answer == "answer:q"


def test_program_run_raises_prediction_error_on_invalid_reply():
    lm = ScriptedLanguageModel(lambda m, o: "not json")
    with pytest.raises(PredictionError):
        asyncio.run(simple_program(lm)(Question(question="q")))


def test_program_with_unlisted_input_is_a_user_error():
    lm = ScriptedLanguageModel(echo_responder)
    a, b = Input(Question), Input(Answer)
    out = Generator(Answer, lm)([a, b])
    with pytest.raises(UserError, match="not listed in inputs"):
        Program(a, out)


def test_calling_a_module_on_data_is_a_type_error():
    lm = ScriptedLanguageModel(echo_responder)
    with pytest.raises(TypeError):
        Generator(Answer, lm)({"question": "q"})


def test_render_messages_has_instructions_schema_examples_and_input():
    lm = ScriptedLanguageModel(echo_responder)
    program = simple_program(
        lm, instructions="Answer briefly.",
        examples=[{"input": {"question": "1+1"}, "output": {"answer": "2"}}],
    )
    generator = program.generators[0]
    messages = generator.render_messages({"question": "2+2"})
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"].startswith("Answer briefly.")
    schema = json.dumps(Answer.model_json_schema(), separators=(",", ":"))
    assert schema in messages[0]["content"]
    assert json.loads(messages[1]["content"]) == {"question": "1+1"}
    assert json.loads(messages[2]["content"]) == {"answer": "2"}
    assert json.loads(messages[3]["content"]) == {"question": "2+2"}
    # exactly these messages reach the language model
    asyncio.run(program({"question": "2+2"}))
    assert lm.requests[-1] == messages


def test_default_instructions_name_input_and_output_fields():
    lm = ScriptedLanguageModel(echo_responder)
    generator = simple_program(lm).generators[0]
    system = generator.render_messages({"question": "q"})[0]["content"]
    assert "`question`" in system and "`answer`" in system


def test_chain_of_thought_outputs_thinking_first():
    lm = ScriptedLanguageModel(echo_responder)
    x0 = Input(Question)
    x1 = ChainOfThought(Answer, lm)(x0)
    program = Program(x0, x1)
    assert list(x1.data_model.model_fields) == ["thinking", "answer"]
    out = asyncio.run(program(Question(question="q")))
    assert out.thinking == "thinking:q" and out.answer == "answer:q"
    assert '"thinking"' in lm.requests[0][0]["content"]  # the schema asks for the thinking field


def test_two_parent_module_receives_fields_of_both_parents():
    lm = ScriptedLanguageModel(echo_responder)
    x0 = Input(Question)
    x1 = ChainOfThought(Answer, lm, name="solver")(x0)

    class Check(DataModel):
        verdict: str

    x2 = Generator(Check, lm, name="checker")([x0, x1])
    program = Program(x0, x2)
    assert list(program.get_module("checker").input_data_model.model_fields) == ["question", "thinking", "answer"]
    out = asyncio.run(program(Question(question="q")))
    assert out.verdict == "verdict:q"
    checker_input = last_user_input(lm.requests[-1])
    assert checker_input == {"question": "q", "thinking": "thinking:q", "answer": "answer:q"}


def test_independent_branches_run_concurrently():
    in_flight, peak = [0], [0]

    def delay(messages):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        return 0.02

    def responder(messages, output_model):
        in_flight[0] -= 1
        return echo_responder(messages, output_model)

    lm = ScriptedLanguageModel(responder, delay=delay, concurrency=4)
    x0 = Input(Question)
    a = Generator(Answer, lm, name="a")(x0)
    b = Generator(Answer, lm, name="b")(x0)
    program = Program(x0, [a, b])
    asyncio.run(program(Question(question="q")))
    assert peak[0] == 2


def test_trainable_variables_get_and_set():
    lm = ScriptedLanguageModel(echo_responder)
    program = simple_program(lm, name="gen")
    assert program.trainable_variables == {"gen": {"instructions": None, "examples": []}}
    new = {"gen": {"instructions": "Be brief.", "examples": [{"input": {"question": "a"}, "output": {"answer": "b"}}]}}
    program.set_trainable_variables(new)
    assert program.trainable_variables == new
    with pytest.raises(KeyError):
        program.set_trainable_variables({"nope": {}})


def test_summary_lists_modules():
    lm = ScriptedLanguageModel(echo_responder)
    program = simple_program(lm, name="gen")
    text = program.summary()
    assert "qa" in text and "gen" in text and "Generator" in text


# ---- save / load ----------------------------------------------------------------------------------------

def build_rich_program(lm):
    """ChainOfThought + a two-parent Generator; data models local to this function (not importable)."""

    class LocalQuestion(DataModel):
        """A grade-school math question."""

        question: str = Field(description="The math word problem")

    class LocalAnswer(DataModel):
        answer: float = Field(description="The numerical answer")

    class LocalCritique(DataModel):
        verdict: Literal["ok", "wrong"] = Field(description="Is the answer right")
        notes: list[str] = Field(description="Short notes")

    x0 = Input(LocalQuestion, name="question_in")
    x1 = ChainOfThought(LocalAnswer, lm, instructions="Solve step by step.", name="solver")(x0)
    x2 = Generator(LocalCritique, lm, name="critic")([x0, x1])
    program = Program(x0, [x1, x2], name="math", description="solve then critique")
    solver, critic = program.get_module("solver"), program.get_module("critic")
    solver.instructions = "Solve carefully, step by step."  # trained instructions differ from the initial ones
    solver.examples = [{"input": {"question": "1+1?"}, "output": {"thinking": "one plus one", "answer": 2.0}}]
    critic.instructions = "Critique the answer."
    critic.examples = [{"input": {"question": "1+1?", "thinking": "t", "answer": 3.0},
                        "output": {"verdict": "wrong", "notes": ["1+1 is 2"]}}]
    return program


SAMPLE_INPUTS = {
    "solver": {"question": "What is 3 * 6?"},
    "critic": {"question": "What is 3 * 6?", "thinking": "3 times 6", "answer": 18.0},
}


def test_save_load_round_trip_renders_exactly_the_same_messages(tmp_path):
    lm = ScriptedLanguageModel(echo_responder)
    program = build_rich_program(lm)
    for generator in program.generators:
        assert import_path(generator.data_model) is None  # only the spec can bring these back
    path = tmp_path / "math.program.json"
    program.save(path)

    with open(path, encoding="utf-8") as f:
        json.load(f)  # plain JSON

    loaded = Program.load(path, language_model=lm)
    assert loaded.name == "math" and loaded.description == "solve then critique"
    assert sorted(g.name for g in loaded.generators) == ["critic", "solver"]
    assert type(loaded.get_module("solver")) is ChainOfThought
    assert type(loaded.get_module("critic")) is Generator
    assert loaded.get_module("solver").initial_instructions == "Solve step by step."
    assert loaded.trainable_variables == program.trainable_variables
    for generator in program.generators:
        inputs = SAMPLE_INPUTS[generator.name]
        assert loaded.get_module(generator.name).render_messages(inputs) == generator.render_messages(inputs)
    assert [n.name for n in loaded.inputs] == ["question_in"]
    assert list(loaded.output_data_model.model_fields) == list(program.output_data_model.model_fields)


def test_loaded_program_runs_like_the_original(tmp_path):
    lm = ScriptedLanguageModel(echo_responder)
    program = build_rich_program(lm)
    program.save(tmp_path / "p.json")
    loaded = Program.load(tmp_path / "p.json", language_model=lm)

    original = asyncio.run(program({"question": "q?"}))
    sent_by_original = list(lm.requests)
    lm.requests.clear()
    again = asyncio.run(loaded({"question": "q?"}))
    assert again.model_dump() == original.model_dump()
    assert lm.requests == sent_by_original


def test_save_is_deterministic_and_load_save_is_stable(tmp_path):
    lm = ScriptedLanguageModel(echo_responder)
    program = build_rich_program(lm)
    program.save(tmp_path / "a.json")
    Program.load(tmp_path / "a.json", language_model=lm).save(tmp_path / "b.json")
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads((tmp_path / "b.json").read_text())


def test_importable_data_models_are_saved_by_import_path(tmp_path):
    lm = ScriptedLanguageModel(echo_responder)
    program = simple_program(lm, name="gen")
    program.save(tmp_path / "p.json")
    state = json.loads((tmp_path / "p.json").read_text())
    gen = next(n for n in state["nodes"] if n["name"] == "gen")
    assert gen["data_model"]["import"] == f"{__name__}:Answer"
    # The file's import path is a name to look up, never imported: unregistered, the spec rebuilds it.
    rebuilt = Program.load(tmp_path / "p.json", language_model=lm).get_module("gen").data_model
    assert rebuilt is not Answer and rebuilt.model_json_schema() == Answer.model_json_schema()
    register_data_model(Answer)
    assert Program.load(tmp_path / "p.json", language_model=lm).get_module("gen").data_model is Answer


def test_api_key_is_never_written(tmp_path):
    secret = "sk-secret"
    real = LanguageModel(model="openai/gpt-4o-mini", api_key=secret, temperature=0.3, aws_secret_access_key="sk-aws")
    program = simple_program(real)
    program.save(tmp_path / "p.json")
    text = (tmp_path / "p.json").read_text()
    assert secret not in text and "sk-aws" not in text
    config = next(iter(json.loads(text)["language_models"].values()))
    assert config["model"] == "openai/gpt-4o-mini" and config["temperature"] == 0.3


def test_api_key_is_not_written_after_fit(tmp_path):
    lm = ScriptedLanguageModel(echo_responder, api_key="sk-secret")
    program = simple_program(lm)
    program.compile(reward=rewards.ExactMatch(), optimizer=RandomFewShot(k=1))
    xs = [Question(question=str(i)) for i in range(3)]
    ys = [Answer(answer=f"answer:{i}") for i in range(3)]
    asyncio.run(program.fit(xs, ys, epochs=1, batch_size=3))
    program.save(tmp_path / "p.json")
    assert "sk-secret" not in (tmp_path / "p.json").read_text()


def test_load_without_language_model_rebuilds_it_from_the_saved_config(tmp_path):
    lm = ScriptedLanguageModel(echo_responder, temperature=0.7, max_tokens=99, concurrency=3)
    simple_program(lm, name="gen").save(tmp_path / "p.json")
    loaded = Program.load(tmp_path / "p.json")
    rebuilt = loaded.get_module("gen").language_model
    assert isinstance(rebuilt, LanguageModel)
    assert (rebuilt.model, rebuilt.temperature, rebuilt.max_tokens, rebuilt.concurrency) == ("scripted", 0.7, 99, 3)


def test_generators_sharing_a_language_model_still_share_it_after_load(tmp_path):
    lm = ScriptedLanguageModel(echo_responder)
    build_rich_program(lm).save(tmp_path / "p.json")
    state = json.loads((tmp_path / "p.json").read_text())
    assert len(state["language_models"]) == 1
    loaded = Program.load(tmp_path / "p.json")
    assert len(loaded.language_models) == 1


def test_optimizer_state_is_saved_after_fit(tmp_path):
    lm = ScriptedLanguageModel(echo_responder)
    program = simple_program(lm, name="gen")
    optimizer = optimizers.RandomFewShot(k=2, k_best=4, seed=3)
    program.compile(reward=rewards.ExactMatch(), optimizer=optimizer)
    xs = [Question(question=str(i)) for i in range(4)]
    ys = [Answer(answer=f"answer:{i}") for i in range(4)]
    asyncio.run(program.fit(xs, ys, epochs=1, batch_size=2))
    program.save(tmp_path / "p.json")

    state = json.loads((tmp_path / "p.json").read_text())
    assert state["optimizer"]["class"] == "RandomFewShot"
    assert state["optimizer"]["state"]["config"] == {"k": 2, "k_best": 4, "min_reward": 0.0, "demos": "mixed", "seed": 3}
    pool = state["optimizer"]["state"]["pool"]["gen"]
    assert sorted(e["input"]["question"] for e in pool) == ["0", "1", "2", "3"]
    assert all(e["reward"] == 1.0 for e in pool)

    loaded = Program.load(tmp_path / "p.json", language_model=lm)
    assert loaded.saved_optimizer_state == state["optimizer"]
    assert len(loaded.get_module("gen").examples) == 2
    restored = optimizers.RandomFewShot(k=2, k_best=4)
    restored.set_state(loaded.saved_optimizer_state["state"])
    def key(entry):
        return entry["input"]["question"]

    # same eligible entries (their order on ties is a seeded random draw)
    assert sorted(restored.best("gen"), key=key) == sorted(optimizer.best("gen"), key=key)


def test_load_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        Program.load(tmp_path / "missing.program.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        Program.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(UserError, match="not a promptrl program"):
        Program.load(tmp_path / "other.json")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    lm = ScriptedLanguageModel(echo_responder)
    program = simple_program(lm)
    target = tmp_path / "sub" / "p.program.json"
    program.save(target)
    program.save(target)
    assert os.listdir(tmp_path / "sub") == ["p.program.json"]


def test_unsaveable_local_data_model_is_a_user_error(tmp_path):
    class Nested(DataModel):
        mapping: dict[str, int]

    lm = ScriptedLanguageModel(echo_responder)
    x0 = Input(Question)
    program = Program(x0, Generator(Nested, lm)(x0))
    with pytest.raises(UserError, match="Nested"):
        program.save(tmp_path / "p.json")
    assert not (tmp_path / "p.json").exists()


def test_local_data_model_with_default_or_constraint_renders_same_messages(tmp_path):
    class Scored(DataModel):
        score: int = Field(description="A score from 0 to 10", ge=0, le=10)
        comment: str = Field("", description="Optional comment")

    lm = ScriptedLanguageModel(echo_responder)
    x0 = Input(Question)
    program = Program(x0, Generator(Scored, lm, name="scorer")(x0))
    program.save(tmp_path / "p.json")
    loaded = Program.load(tmp_path / "p.json", language_model=lm)
    inputs = {"question": "q"}
    assert loaded.get_module("scorer").render_messages(inputs) == program.get_module("scorer").render_messages(inputs)
