"""The embedded model served by llama-cpp-python's own OpenAI-compatible server (started here on a
free loopback port), used as any user would: `language_model=openai language_model.api_base=...`.
The server knows only the llama.cpp form of structured output, so `auto` must find it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from typer.testing import CliRunner

from promptrl.cli import app
from promptrl.engine.transports import local_model_path

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server] (make install)")
    port = free_port()
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", local_model_path("local/smollm2-135m", None),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/models", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_structured_output_reaches_a_llama_cpp_server_and_every_prediction_validates(llama_server, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = CliRunner().invoke(app, [
        "evaluate", "language_model=openai", f"language_model.api_base={llama_server}",
        "language_model.model=openai/smollm2-135m", "language_model.max_tokens=64", "language_model.concurrency=4",
        "nb_runs=1", "dataset.test_size=12", "--no-progress", f"hydra.run.dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["mean"]["failures"] == 0
    usage = json.loads((tmp_path / "usage.json").read_text())["language_models"]["program"]
    assert usage["calls"] == 12 and usage["failures"] == 0
    # json_schema was asked first, the server turned it down, the llama.cpp form was used from then on
    assert usage["structured_output"]["mode"] == "json_object_schema"
    assert [f["from"] for f in usage["structured_output"]["fallbacks"]] == ["json_schema"]
    assert "response_format" in usage["structured_output"]["fallbacks"][0]["reason"]
    assert usage["retries"] == 0 and usage["format_resends"] >= 1  # a rejected form is not a flaky server
    # the report says how the schema was asked for, beside the usage table
    assert ("- program: structured output `json_object_schema` (setting `auto`, fell back from `json_schema` "
            "(HTTP 500: ") in (tmp_path / "report.md").read_text()
