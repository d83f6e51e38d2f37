"""The litellm provider path against a local OpenAI-compatible server (loopback only)."""

import asyncio

import pytest
from typer.testing import CliRunner

import promptrl
from promptrl.cli import app
from promptrl.errors import LanguageModelUnavailable

from fake_openai import fake_openai_server, sentiment_program as program


@pytest.fixture
def server(monkeypatch):
    """(base url, recorder) of a scripted OpenAI-compatible server on loopback."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    with fake_openai_server() as served:
        yield served


def test_structured_output_through_litellm_with_accounting(server):
    server, recorder = server
    lm = promptrl.LanguageModel("openai/gpt-4o-mini", api_base=server, num_retries=0, concurrency=2)
    p, dataset = program(lm)
    x = [dataset.input_data_model(text="a great day"), dataset.input_data_model(text="a dull day")]
    outputs = asyncio.run(p.predict(x, seed=5))
    assert [o.answer for o in outputs] == ["positive", "negative"]
    assert lm.usage.calls == 2 and lm.usage.prompt_tokens == 22 and lm.usage.completion_tokens == 6
    request = recorder.requests[0]["body"]
    assert request["response_format"]["type"] == "json_schema"  # the output model's schema is asked for
    assert request["response_format"]["json_schema"]["schema"]["properties"]["answer"]["enum"] == ["positive", "negative"]
    assert request["seed"] is not None


def test_a_flaky_api_is_retried(server):
    server, recorder = server
    recorder.fail_first = 1
    lm = promptrl.LanguageModel("openai/gpt-4o-mini", api_base=server, num_retries=2)
    p, dataset = program(lm)
    outputs = asyncio.run(p.predict([dataset.input_data_model(text="great")]))
    assert outputs[0].answer == "positive" and len(recorder.requests) == 2 and lm.usage.failures == 0


def test_an_unreachable_endpoint_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    lm = promptrl.LanguageModel("openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1", num_retries=0, timeout=5)
    p, dataset = program(lm)
    with pytest.raises(LanguageModelUnavailable, match="cannot reach"):
        asyncio.run(p.predict([dataset.x_test[0]]))
    result = CliRunner().invoke(app, ["evaluate", "language_model=openai", "language_model.api_base=http://127.0.0.1:9/v1",
                                      "language_model.num_retries=0", "language_model.timeout=5", "nb_runs=1",
                                      "dataset.test_size=2", "--no-progress", f"hydra.run.dir={tmp_path}"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: cannot reach language model 'openai/gpt-4o-mini' at http://127.0.0.1:9/v1 (")
    assert errors[0].endswith("; start the server or fix language_model.api_base")


def test_api_key_never_reaches_outputs(server, tmp_path):
    server, _ = server
    lm = promptrl.LanguageModel("openai/gpt-4o-mini", api_base=server, api_key="sk-secret-123", num_retries=0)
    p, _ = program(lm)
    p.save(tmp_path / "p.program.json")
    assert "sk-secret-123" not in (tmp_path / "p.program.json").read_text()
    result = CliRunner().invoke(app, ["evaluate", "language_model=openai", f"language_model.api_base={server}",
                                      "+language_model.api_key=sk-secret-123", "nb_runs=1", "dataset.test_size=2",
                                      "--no-progress", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 0, result.output
    files = [f for f in (tmp_path / "run").rglob("*") if f.is_file()]
    assert any(f.parent.name == "reply_cache" for f in files)  # the replies kept for --resume too
    for file in files:
        assert b"sk-secret-123" not in file.read_bytes(), file.name


def test_a_model_name_without_a_provider_is_one_line_naming_the_prefix(server, tmp_path):
    server, recorder = server
    lm = promptrl.LanguageModel("smollm2", api_base=server, num_retries=0)
    p, dataset = program(lm)
    with pytest.raises(promptrl.errors.UserError, match="language_model.model=openai/smollm2 for an OpenAI-compatible"):
        asyncio.run(p.predict([dataset.x_test[0]]))
    assert recorder.requests == []


def test_a_run_with_no_valid_answer_says_which_setting_to_change(server, tmp_path):
    server, recorder = server
    recorder.actions = [{"content": "positive"}] * 3  # JSON mode, schema only in the prompt: a bare word
    result = CliRunner().invoke(app, ["evaluate", "language_model=openai", f"language_model.api_base={server}",
                                      "language_model.structured_output=json_object", "nb_runs=1",
                                      "dataset.test_size=3", "--no-progress", f"hydra.run.dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    warnings = [line.split("[WARNING] - ", 1)[-1] for line in result.output.splitlines() if "valid answer" in line]
    assert warnings == ["no prediction of evaluation run 1 was a valid answer (first: openai/gpt-4o-mini: output "
                        "failed validation: Invalid JSON: expected value at line 1 column 1); the server was not "
                        "asked to follow the output schema (structured_output json_object); use "
                        "language_model.structured_output=auto, which sends the schema"]
