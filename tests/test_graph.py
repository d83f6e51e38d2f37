"""Programs declared in YAML (`program=graph`): the same programs as the Python builders (same
prompts, byte for byte), through a checkpoint, one-line graph errors, and CLI runs."""

from __future__ import annotations

import asyncio
import json
import typing
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from typer.testing import CliRunner

from promptrl import ChainOfThought, DataModel, Field, Generator, Program, UserError, builders
from promptrl.cli import app, config_dir
from promptrl.experiment.build import container, instantiate_node
from promptrl.graph import graph_program
from promptrl.testing import ScriptedLanguageModel, last_user_input

runner = CliRunner()


class Review(DataModel):
    text: str = Field(description="A product review")


class Label(DataModel):
    answer: str = Field(description="positive or negative")


def echo(messages, output_model):
    """A valid reply for any output model, depending on the input (so each node's input matters)."""
    seen = json.dumps(last_user_input(messages), sort_keys=True)
    reply = {}
    for name, info in output_model.model_fields.items():
        choices = typing.get_args(info.annotation) if typing.get_origin(info.annotation) is typing.Literal else ()
        reply[name] = choices[0] if choices else f"{name}<{seen}>"
    return reply


def scripted():
    return ScriptedLanguageModel(echo)


def from_config(lm, option, *overrides):
    """The program option composed by Hydra and built with build_program's call contract."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"program={option}", *overrides])
    return instantiate_node(container(cfg, "program"), "program", language_model=lm, dataset_input=Review,
                            dataset_output=Label)


def shape(program):
    return [(n.name, type(n.module).__name__ if n.module else "Input", [p.name for p in n.parents],
             list(n.data_model.model_fields)) for n in program.nodes]


def prompts(program, lm, texts=("great value", "it broke after a day")):
    """Every request the program sends for a few inputs, in order."""
    lm.requests.clear()
    for text in texts:
        asyncio.run(program({"text": text}))
    return [json.dumps(request) for request in lm.requests]


CANNED = [
    ("generator", [], dict(), builders.generator_program),
    ("generator", ["program.instructions=Label the review."], dict(instructions="Label the review."),
     builders.generator_program),
    ("chain_of_thought", ["program.instructions='Think, then label.'"], dict(instructions="Think, then label."),
     builders.chain_of_thought_program),
    # the values the former conf/program/two_stage.yaml passed to the builder
    ("two_stage", [], dict(notes_instructions="Write short notes that help answer the input."),
     builders.two_stage_program),
    ("two_stage", ["program.instructions=Label it.", "program.notes_instructions=Note the adjectives."],
     dict(instructions="Label it.", notes_instructions="Note the adjectives."), builders.two_stage_program),
    ("generator", ["program.output_data_model={name: Verdict, fields: {answer: {type: choice, choices: [pos, neg]}}}"],
     dict(output_data_model={"name": "Verdict", "fields": {"answer": {"type": "choice", "choices": ["pos", "neg"]}}}),
     builders.generator_program),
]


@pytest.mark.parametrize("option, overrides, kwargs, builder", CANNED)
def test_canned_yaml_programs_send_the_python_builders_prompts_byte_for_byte(option, overrides, kwargs, builder):
    lm = scripted()
    from_yaml = from_config(lm, option, *overrides)
    from_python = builder(lm, Review, Label, **kwargs)
    assert (from_yaml.name, from_yaml.description) == (from_python.name, from_python.description)
    assert shape(from_yaml) == shape(from_python)
    assert [m.initial_instructions for m in from_yaml.generators] == \
        [m.initial_instructions for m in from_python.generators]
    sent = prompts(from_yaml, lm)
    assert sent and sent == prompts(from_python, lm)


ISSUE_GRAPH = {
    "nodes": {
        "notes": {"inputs": ["input"], "instructions": "Write short notes.",
                  "output": {"name": "Notes", "fields": {"notes": {"type": "str",
                                                                   "description": "Short notes about the input"}}}},
        "answer": {"inputs": ["input", "notes"], "output": "dataset", "module": "chain_of_thought"},
    },
    "outputs": ["answer"],
}


def hand_built(lm):
    """ISSUE_GRAPH written with the Python API."""
    from promptrl import Input

    class Notes(DataModel):
        notes: str = Field(description="Short notes about the input")

    x0 = Input(Review, name="inputs")
    notes = Generator(Notes, lm, instructions="Write short notes.", name="notes")(x0)
    answer = ChainOfThought(Label, lm, name="answer")([x0, notes])
    return Program(x0, answer, name="graph")


def test_a_declared_graph_is_the_program_written_in_python():
    lm = scripted()
    program = graph_program(lm, Review, Label, **ISSUE_GRAPH)
    reference = hand_built(lm)
    assert shape(program) == shape(reference)
    assert prompts(program, lm) == prompts(reference, lm)
    # the notes node's reply reaches the answer node's prompt
    assert '"notes": "notes<' in lm.requests[-1][-1]["content"]


def test_a_graph_program_round_trips_through_a_checkpoint(tmp_path):
    lm = scripted()
    program = graph_program(lm, Review, Label, **ISSUE_GRAPH)
    program.get_module("answer").examples = [{"input": {"text": "t", "notes": "n"},
                                              "output": {"thinking": "th", "answer": "positive"}}]
    program.save(tmp_path / "g.program.json")
    saved = json.loads((tmp_path / "g.program.json").read_text())
    notes_ref = next(n for n in saved["nodes"] if n["name"] == "notes")["data_model"]
    assert notes_ref["import"] is None and notes_ref["spec"]["name"] == "Notes"  # rebuilt from its spec, no trust
    loaded = Program.load(tmp_path / "g.program.json", language_model=lm)
    assert shape(loaded) == shape(program)
    assert prompts(loaded, lm) == prompts(program, lm)


def test_several_outputs_are_merged():
    lm = scripted()
    nodes = {"label": {"inputs": ["input"], "output": "dataset"},
             "why": {"inputs": ["input", "label"], "output": {"fields": {"reason": "str"}}}}
    program = graph_program(lm, Review, Label, nodes=nodes, outputs=["label", "why"])
    out = asyncio.run(program({"text": "fine"}))
    assert set(out.model_dump()) == {"answer", "reason"}
    assert program.get_module("why").data_model.__name__ == "Why"  # a spec without name: the node's


def node(**spec):
    return {"inputs": ["input"], "output": "dataset", **spec}


ERRORS = [
    (dict(nodes={"a": node(inputs=["input", "b"]), "b": node(inputs=["a"])}, outputs=["a"]),
     "nodes form a cycle a -> b -> a"),
    (dict(nodes={"a": node(inputs=["a"])}, outputs=["a"]), "node 'a' lists itself in its inputs"),
    (dict(nodes={"answer": node(inputs=["input", "nots"])}, outputs=["answer"]),
     "node 'answer' reads unknown input 'nots'"),
    (dict(nodes={"extra": node(), "answer": node()}, outputs=["answer"]), "node 'extra' is unused"),
    (dict(nodes={"answer": node(module="react")}, outputs=["answer"]),
     "unknown module 'react'; use one of generator, chain_of_thought"),
    (dict(nodes={"answer": node()}), "outputs is missing"),
    (dict(nodes={"answer": node()}, outputs=[]), "outputs is missing"),
    (dict(nodes={"answer": node()}, outputs=["answr"]), "output 'answr' is not a node"),
    (dict(nodes={"answer": node(output={"name": "A", "fields": {"answer": {"type": "decimal"}}})}, outputs=["answer"]),
     "node 'answer': output: data model 'A' field 'answer': unknown type 'decimal'"),
    (dict(nodes={"answer": node(output={"name": "A", "feilds": {"answer": "str"}})}, outputs=["answer"]),
     "node 'answer': output data model has unknown key(s) ['feilds']"),
    (dict(nodes={"answer": node(output="no.such.module:Model")}, outputs=["answer"]),
     "node 'answer': output: cannot import 'no.such.module:Model'"),
    (dict(nodes={"answer": node(output=3)}, outputs=["answer"]), "node 'answer': output must be dataset"),
    (dict(nodes={"answer": node(prompt="x")}, outputs=["answer"]), "node 'answer': unknown key(s) ['prompt']"),
    (dict(nodes={"answer": {"output": "dataset"}}, outputs=["answer"]), "node 'answer' has no inputs"),
    (dict(nodes={"input": node()}, outputs=["input"]), "node name 'input' is reserved"),
    (dict(nodes={"a": node(), "b": node(inputs=["a"], output={"fields": {"answer": "str"}})}, outputs=["a", "b"]),
     "outputs 'a' and 'b' both produce field 'answer'"),
    (dict(), "program=graph needs a graph"),
]


@pytest.mark.parametrize("graph, message", ERRORS)
def test_graph_mistakes_are_one_line_naming_the_node(graph, message):
    with pytest.raises(UserError) as error:
        graph_program(scripted(), Review, Label, **graph)
    assert message in str(error.value) and "\n" not in str(error.value)


# ---- the CLI ---------------------------------------------------------------------------------------------------

def notes_student(**settings):
    """A scripted model for CLI runs of graphs on the sentiment task: it writes notes, and labels a
    review right only with the notes in its input and few-shot examples in its prompt."""

    def respond(messages, output_model):
        fields = output_model.model_fields
        data = last_user_input(messages)
        if "notes" in fields:
            return {"notes": "negative words" if any(w in data["text"] for w in ("bad", "broke", "poor", "awful",
                                                                                  "terrible", "waste")) else "none"}
        right = "notes" in data and any(m["role"] == "assistant" for m in messages)
        return {"answer": "negative" if right and data["notes"] == "negative words" else "positive"}

    settings["model"] = "scripted"
    return ScriptedLanguageModel(respond, **settings)


CLI_SETTINGS = [f"language_model._target_={__name__}.notes_student", "+optimizer=random_few_shot", "nb_runs=1",
                "epochs=1", "batch_size=4", "dataset.train_size=8", "dataset.val_size=4", "dataset.test_size=8",
                "--no-progress"]
NODES_OVERRIDE = ("program.nodes={notes: {inputs: [input], output: {name: Notes, fields: {notes: {type: str, "
                  "description: 'Short notes about the input'}}}, instructions: Write short notes.}, "
                  "answer: {inputs: [input, notes], output: dataset}}")


def check_run(run_dir: Path):
    best = json.loads((run_dir / "best.program.json").read_text())
    nodes = {n["name"]: n for n in best["nodes"]}
    assert list(nodes) == ["inputs", "notes", "answer"] and nodes["answer"]["parents"] == ["inputs", "notes"]
    assert nodes["notes"]["variables"]["instructions"] == "Write short notes."
    assert (run_dir / "final.json").is_file()
    loaded = Program.load(run_dir / "best.program.json", language_model=scripted())
    assert shape(loaded)[1] == ("notes", "Generator", ["inputs"], ["notes"])


def test_cli_trains_a_graph_given_on_the_command_line(tmp_path):
    result = runner.invoke(app, ["train", "program=graph", NODES_OVERRIDE, "program.outputs=[answer]", *CLI_SETTINGS,
                                 f"hydra.run.dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    check_run(tmp_path)


def test_cli_trains_a_users_graph_file(tmp_path, monkeypatch):
    graph = tmp_path / "my_graph.yaml"
    graph.write_text("""\
name: keywords_classify
nodes:
  notes:
    inputs: [input]
    output: {name: Notes, fields: {notes: {type: str, description: Short notes about the input}}}
    instructions: Write short notes.
  answer: {inputs: [input, notes], output: dataset}
outputs: [answer]
""")
    monkeypatch.chdir(tmp_path)  # the path is relative to where promptrl runs
    result = runner.invoke(app, ["train", "program=graph", "program.path=my_graph.yaml", *CLI_SETTINGS,
                                 f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 0, result.output
    check_run(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "best.program.json").read_text())["name"] == "keywords_classify"


@pytest.mark.parametrize("content, message", [
    (None, "program graph file not found: nope.yaml"),
    ("nodes: {answer: {inputs: [input, nots], output: dataset}}\noutputs: [answer]\n",
     "node 'answer' reads unknown input 'nots'"),
    ("nodes: [answer\n", "is not valid YAML at line"),
    ("nodez: {}\n", "unknown key(s) ['nodez']"),
])
def test_cli_graph_file_mistakes_are_one_line(tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / "nope.yaml").write_text(content)
    result = runner.invoke(app, ["train", "program=graph", "program.path=nope.yaml", *CLI_SETTINGS,
                                 f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output
