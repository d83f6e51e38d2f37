"""Secrets are masked by value at every exit: files under the run and sweep dirs, stdout, stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys


from promptrl import secrets

from fake_openai import fake_openai_server


# ---- the mechanism ----------------------------------------------------------------------------------

def test_secret_keys_by_name_spare_token_counts():
    for key in ("api_key", "OPENAI_API_KEY", "x-api-key", "Authorization", "access_token", "HF_TOKEN",
                "aws_secret_access_key", "password", "Cookie"):
        assert secrets.is_secret_key(key), key
    for key in ("max_tokens", "prompt_tokens", "completion_tokens", "model", "api_base", "temperature",
                "TOKENIZERS_PARALLELISM"):
        assert not secrets.is_secret_key(key), key


def test_values_are_collected_from_overrides_and_masked_in_every_form():
    secrets.collect_from_overrides([
        "+language_model.extra_headers={x-custom: hdr-value-31415, Authorization: 'Bearer tok-92653'}",
        "language_model.api_base=http://me:pa%40ss-5897@127.0.0.1:1/v1",
        "+language_model.api_key=sk-unit-271828",
        "dataset.test_size=12345678",
    ])
    text = ('{"h": "hdr-value-31415", "b": "Bearer tok-92653", "k": "sk-unit-271828", "q": "pa%40ss-5897", '
            '"n": 12345678}')
    scrubbed = secrets.scrub(text)
    for value in ("hdr-value-31415", "tok-92653", "sk-unit-271828", "pa%40ss-5897"):
        assert value not in scrubbed
    assert "12345678" in scrubbed  # an ordinary override is not a secret
    secrets.add_secret('quo"te-secret-1')
    assert "quo" not in secrets.scrub(json.dumps({"v": 'quo"te-secret-1'}))  # JSON-escaped form too


def test_url_userinfo_is_masked_even_when_never_seen_before():
    assert secrets.scrub("cannot reach http://bob:never-seen-77@host:1/v1") == "cannot reach http://***@host:1/v1"
    assert secrets.strip_userinfo("https://bob:never-seen-88@host/v1") == "https://host/v1"


def test_data_keys_are_not_taken_for_credentials():
    row = {"input": {"token": "the word"}, "prediction": {"password": "hunter-guess"}}
    assert secrets.scrub_data(row) == row
    assert secrets.scrub_config({"language_model": {"api_key": "sk-config-1618"}})["language_model"]["api_key"] == "***"


# ---- every exit, through the real CLI ------------------------------------------------------------------

KEYS = {
    "env": "sk-env-4f9a8b7c6d5e",
    "api_key": "sk-arg-1a2b3c4d5e6f",
    "x-api-key": "hdr-x-api-9z8y7x6w",
    "bearer": "bearer-5q4r3s2t1u",
    "userinfo": "urlpass-7h6g5f4e3d",
    "swept_1": "sk-sweep-one-8d7c6b",
    "swept_2": "sk-sweep-two-5a4f3e",
}


def run_cli(args, cwd):
    env = {**os.environ, "OPENAI_API_KEY": KEYS["env"], "PYTHONUNBUFFERED": "1"}
    env.pop("PROMPTRL_CONFIG_DIR", None)
    return subprocess.run([sys.executable, "-m", "promptrl.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_no_key_given_any_way_reaches_a_file_or_the_terminal(tmp_path):
    with fake_openai_server() as (url, recorder):
        given = ["language_model=openai", f"language_model.api_base={url}", "language_model.num_retries=0",
                 f"+language_model.api_key={KEYS['api_key']}",
                 f"+language_model.extra_headers={{x-api-key: {KEYS['x-api-key']}, "
                 f"Authorization: 'Bearer {KEYS['bearer']}'}}",
                 "nb_runs=1", "dataset.test_size=2", "--no-progress"]
        runs = {
            "single": run_cli(["train", *given, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path),
            # a sweep over two keys: Hydra's job lines show each job's own value
            "sweep": run_cli(["train", "-m", *[g for g in given if "api_key" not in g],
                              f"+language_model.api_key={KEYS['swept_1']},{KEYS['swept_2']}",
                              f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path),
            "cfg": run_cli(["train", *given, "--cfg", "job"], tmp_path),
            # a key as URL userinfo, and a failure: its error line, config.yaml and --debug traceback
            "debug": run_cli(["evaluate", *given, "language_model.api_base="
                              f"http://user:{KEYS['userinfo']}@127.0.0.1:9/v1", "--debug",
                              f"hydra.run.dir={tmp_path / 'failed'}"], tmp_path),
        }
        assert runs["single"].returncode == 0, runs["single"].stderr
        assert runs["sweep"].returncode == 0, runs["sweep"].stderr
        assert runs["cfg"].returncode == 0 and "extra_headers" in runs["cfg"].stdout
        assert "#1 : " in runs["sweep"].stdout  # the job lines were printed (masked)
        assert runs["debug"].returncode != 0 and "Traceback" in runs["debug"].stderr
        # The keys were really used: the server saw them (so the greps below can fail).
        assert len(recorder.requests) == 2 + 2 * 2
        assert all(r["headers"]["x-api-key"] == KEYS["x-api-key"] for r in recorder.requests)

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"config.yaml", "overrides.yaml", "initial.program.json", "multirun.yaml", "sweep_report.csv",
            "sweep_report.md", "promptrl.log", "usage.json", "report.md"} <= {p.name for p in files}
    for name, key in KEYS.items():
        for path in files:
            assert key not in path.read_text(errors="ignore"), f"{name} key in {path.relative_to(tmp_path)}"
        for run, result in runs.items():
            assert key not in result.stdout + result.stderr, f"{name} key printed by the {run} run"
    assert "***" in runs["cfg"].stdout


def test_multirun_yaml_is_masked_when_hydra_gives_up_before_any_job(tmp_path):
    key = "sk-never-ran-4e3d2c1b"
    # no '+': the local model's config has no api_key, so composing the first job fails
    result = run_cli(["evaluate", "-m", f"language_model.api_key={key},sk-other-9f8e7d6c",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert result.returncode != 0
    written = (tmp_path / "sweep" / "multirun.yaml").read_text()
    assert "api_key" in written and key not in written and key not in result.stdout + result.stderr
