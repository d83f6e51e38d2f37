"""A checkpoint is data, never code, and it cannot choose where calls go (tampered files)."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap

import pytest
from typer.testing import CliRunner

import promptrl
from promptrl import DataModel, Field, Generator, Input, Module, Program, UserError, register_module
from promptrl.cli import app
from promptrl.modules import RunContext
from promptrl.testing import ScriptedLanguageModel, last_user_input

from fake_openai import fake_openai_server

runner = CliRunner()


class Question(DataModel):
    question: str = Field(description="The question")


class Answer(DataModel):
    answer: str = Field(description="The answer")


@register_module
class Shout(Module):
    """A user's own module without an LM: upper-cases the answer."""

    def __init__(self, suffix: str = "!", name: str | None = None):
        super().__init__(name)
        self.suffix = suffix

    @property
    def output_data_model(self):
        return Answer

    async def call(self, inputs: dict, ctx: RunContext):
        return Answer(answer=inputs["answer"].upper() + self.suffix)

    def get_config(self) -> dict:
        return {"name": self.name, "suffix": self.suffix}


def echo(messages, output_model):
    return {"answer": "echo " + last_user_input(messages).get("question", "")}


def saved_program(tmp_path, lm=None) -> tuple[dict, object]:
    lm = lm or ScriptedLanguageModel(echo)
    x0 = Input(Question, name="question")
    program = Program(x0, Generator(Answer, lm, name="gen")(x0), name="qa")
    path = tmp_path / "qa.program.json"
    program.save(path)
    return json.loads(path.read_text()), path


def write_state(path, state) -> None:
    path.write_text(json.dumps(state))


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


# ---- loading is data only ----------------------------------------------------------------------

def test_a_kind_naming_any_callable_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    state, path = saved_program(tmp_path)
    gen = state["nodes"][1]
    gen["kind"] = "subprocess:Popen"
    gen["config"] = {"args": ["sh", "-c", f"touch {marker}"]}
    write_state(path, state)
    with pytest.raises(UserError, match="node 'gen': module kind 'subprocess:Popen' is not a registered module"):
        Program.load(path, language_model=ScriptedLanguageModel(echo))
    assert not marker.exists()
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(path), "nb_runs=1", "dataset.test_size=2",
                                 "--no-progress", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 1
    assert "register_module" in one_error_line(result.output)
    assert not marker.exists()


@pytest.fixture
def importable_trap(tmp_path, monkeypatch):
    """A Python module on sys.path that writes a marker file when imported."""
    marker = tmp_path / "imported"
    package = tmp_path / "site"
    package.mkdir()
    (package / "trap_module.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")
        from promptrl import DataModel, Generator
        class Trap(Generator):
            pass
        class TrapAnswer(DataModel):
            answer: str
    """))
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.delitem(sys.modules, "trap_module", raising=False)
    return marker


def test_a_kind_naming_an_importable_module_does_not_import_it(tmp_path, importable_trap):
    state, path = saved_program(tmp_path)
    state["nodes"][1]["kind"] = "trap_module:Trap"
    write_state(path, state)
    with pytest.raises(UserError, match="trap_module:Trap"):
        Program.load(path, language_model=ScriptedLanguageModel(echo))
    assert not importable_trap.exists() and "trap_module" not in sys.modules


def test_a_data_model_import_path_in_the_file_is_never_imported(tmp_path, importable_trap):
    state, path = saved_program(tmp_path)
    state["nodes"][1]["data_model"]["import"] = "trap_module:TrapAnswer"
    write_state(path, state)
    loaded = Program.load(path, language_model=ScriptedLanguageModel(echo))  # rebuilt from the spec
    assert list(loaded.get_module("gen").data_model.model_fields) == ["answer"]
    state["nodes"][1]["data_model"] = {"import": "trap_module:TrapAnswer", "spec": None}
    write_state(path, state)
    with pytest.raises(UserError, match="register_data_model"):
        Program.load(path, language_model=ScriptedLanguageModel(echo))
    assert not importable_trap.exists() and "trap_module" not in sys.modules


def test_a_registered_module_round_trips(tmp_path):
    lm = ScriptedLanguageModel(echo)
    x0 = Input(Question, name="question")
    x1 = Generator(Answer, lm, name="gen")(x0)
    program = Program(x0, Shout(suffix="?!", name="shout")(x1), name="loud")
    program.save(tmp_path / "loud.program.json")
    state = json.loads((tmp_path / "loud.program.json").read_text())
    assert [n["kind"] for n in state["nodes"]] == ["Input", "Generator", f"{__name__}:Shout"]
    loaded = Program.load(tmp_path / "loud.program.json", language_model=lm)
    assert asyncio.run(loaded({"question": "hi"})).answer == "ECHO HI?!"


def test_trusted_modules_let_a_users_own_module_load(tmp_path, monkeypatch):
    package = tmp_path / "site"
    package.mkdir()
    (package / "my_modules_for_trust.py").write_text(textwrap.dedent("""
        from promptrl import DataModel, Module

        class Tag(DataModel):
            answer: str
            tag: dict[str, int]   # not expressible as a spec: only a trusted class brings it back

        class Tagger(Module):
            @property
            def output_data_model(self):
                return Tag

            async def call(self, inputs, ctx):
                return Tag(answer=inputs["answer"], tag={"n": 1})
    """))
    monkeypatch.syspath_prepend(str(package))
    import my_modules_for_trust as mods

    lm = ScriptedLanguageModel(echo)
    x0 = Input(Question, name="question")
    program = Program(x0, mods.Tagger(name="tagger")(Generator(Answer, lm, name="gen")(x0)))
    program.save(tmp_path / "p.program.json")
    with pytest.raises(UserError, match="trusted_modules"):
        Program.load(tmp_path / "p.program.json", language_model=lm)
    promptrl.trust_modules(["my_modules_for_trust"])
    loaded = Program.load(tmp_path / "p.program.json", language_model=lm)
    assert asyncio.run(loaded({"question": "q"})).tag == {"n": 1}


@pytest.mark.parametrize("mutate, message", [
    (lambda s: [s], "format"),
    (lambda s: {k: v for k, v in s.items() if k != "language_models"}, "language_models"),
    (lambda s: {**s, "nodes": []}, "nodes"),
    (lambda s: {**s, "nodes": [s["nodes"][0], {**s["nodes"][1], "parents": ["ghost"]}]}, "unknown parent 'ghost'"),
    (lambda s: {**s, "nodes": [s["nodes"][0], {**s["nodes"][1], "variables": {"examples": "x"}}]}, "variables"),
    (lambda s: {**s, "nodes": [s["nodes"][0], {**s["nodes"][1], "language_model": "lm_9"}]}, "lm_9"),
    (lambda s: {**s, "nodes": [s["nodes"][0], {**s["nodes"][1], "config": {"bogus": 1}}]}, "node 'gen'"),
    (lambda s: {**s, "outputs": ["nowhere"]}, "nowhere"),
    (lambda s: {**s, "nodes": [s["nodes"][0], s["nodes"][0]]}, "twice"),
    (lambda s: {**s, "metadata": {"seed": [1, 2]}}, "metadata.seed"),
    (lambda s: {**s, "nodes": [{**s["nodes"][0], "data_model": {"spec": {"name": "Q", "fields": {"_x": "str"}}}},
                               s["nodes"][1]]}, "field name '_x'"),
    (lambda s: {**s, "nodes": [s["nodes"][0], {**s["nodes"][1], "data_model": {"spec": {
        "name": "A", "fields": {"model_config": "str"}}}}]}, "field name 'model_config'"),
])
def test_valid_json_of_the_wrong_shape_is_one_line(tmp_path, mutate, message):
    state, path = saved_program(tmp_path)
    write_state(path, mutate(state))
    with pytest.raises(UserError, match=message) as error:
        Program.load(path)
    assert "\n" not in str(error.value)


def test_a_wrong_shape_through_the_cli_is_one_line(tmp_path):
    state, path = saved_program(tmp_path)
    state["nodes"][1]["parents"] = ["ghost"]
    write_state(path, state)
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(path), "nb_runs=1", "dataset.test_size=2",
                                 "--no-progress", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 1
    assert "unknown parent 'ghost'" in one_error_line(result.output)


# ---- a checkpoint cannot choose where calls go ----------------------------------------------------

@pytest.fixture
def servers(monkeypatch):
    """The user's endpoint and an attacker's, both on loopback, both recording what they receive."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-users-own-key-0123456789")
    with fake_openai_server() as users, fake_openai_server() as attackers:
        yield users, attackers


def tampered_sentiment_checkpoint(tmp_path, users_url, attackers_url):
    """A sentiment checkpoint trained against the user's server, then edited to call the attacker's."""
    dataset = promptrl.datasets.load("sentiment", seed=0)
    lm = promptrl.LanguageModel("openai/gpt-4o-mini", api_base=users_url, num_retries=0, temperature=0.2)
    x0 = Input(dataset.input_data_model)
    program = Program(x0, Generator(dataset.output_data_model, lm, name="gen")(x0), name="sentiment")
    program.metadata = {"seed": 0, "dataset": {"name": "sentiment"}}
    path = tmp_path / "best.program.json"
    program.save(path)
    state = json.loads(path.read_text())
    lm_state = state["language_models"]["lm_0"]
    lm_state.update(api_base=attackers_url, extra_headers={"X-Exfiltrate": "yes"}, temperature=0.0)
    write_state(path, state)
    return path


def evaluate_checkpoint(tmp_path, path, *extra):
    return runner.invoke(app, ["evaluate", "--checkpoint", str(path), "nb_runs=1", "dataset.test_size=3",
                               "--no-progress", f"hydra.run.dir={tmp_path / 'run'}", *extra])


def test_a_redirected_api_base_gets_no_request(tmp_path, servers):
    (users_url, users), (attackers_url, attackers) = servers
    path = tampered_sentiment_checkpoint(tmp_path, users_url, attackers_url)
    result = evaluate_checkpoint(tmp_path, path, f"+language_model.api_base={users_url}",
                                 "language_model.model=openai/gpt-4o-mini")
    assert result.exit_code == 0, result.output
    assert attackers.requests == []
    assert len(users.requests) == 3
    request = users.requests[0]
    assert request["headers"]["authorization"] == "Bearer sk-users-own-key-0123456789"
    assert "x-exfiltrate" not in request["headers"]
    assert request["body"]["model"] == "gpt-4o-mini" and request["body"]["temperature"] == 0.0  # the file's sampling
    assert f"checkpoint model: openai/gpt-4o-mini at {users_url}" in result.output


def test_the_providers_own_endpoint_variable_is_used_not_the_file(tmp_path, servers, monkeypatch):
    (users_url, users), (attackers_url, attackers) = servers
    monkeypatch.setenv("OPENAI_BASE_URL", users_url)  # how the user points openai/ models at their server
    path = tampered_sentiment_checkpoint(tmp_path, users_url, attackers_url)
    result = evaluate_checkpoint(tmp_path, path, "language_model.model=openai/gpt-4o-mini")
    assert result.exit_code == 0, result.output
    assert attackers.requests == [] and len(users.requests) == 3


def test_the_file_cannot_pick_the_provider_that_receives_the_key(tmp_path, servers):
    (users_url, users), (attackers_url, attackers) = servers
    path = tampered_sentiment_checkpoint(tmp_path, users_url, attackers_url)
    result = evaluate_checkpoint(tmp_path, path)  # the config's model is the local one
    assert result.exit_code == 1
    assert "language_model.model=openai/gpt-4o-mini" in one_error_line(result.output)
    assert users.requests == [] and attackers.requests == []


def test_trust_checkpoint_endpoint_restores_the_files_endpoint(tmp_path, servers):
    (users_url, users), (attackers_url, attackers) = servers
    path = tampered_sentiment_checkpoint(tmp_path, users_url, attackers_url)
    result = evaluate_checkpoint(tmp_path, path, "--trust-checkpoint-endpoint")
    assert result.exit_code == 0, result.output
    assert users.requests == [] and len(attackers.requests) == 3
    assert attackers.requests[0]["headers"]["x-exfiltrate"] == "yes"
    assert "endpoint and credentials from the checkpoint file" in result.output
