"""Synalinks' names on promptrl: the GSM8K loaders, the `utils` plots, and the seed's GSM8K script
(experiments/seed_gsm8k.py) running unchanged but for its import line and its model."""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import promptrl
from promptrl import datasets
from promptrl.datasets import gsm8k
from promptrl.errors import UserError
from promptrl.testing import ScriptedLanguageModel, last_user_input

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "seed_gsm8k.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OUTPUTS = ["gsm8k_baseline.png", "evaluation_metrics_with_mean_and_std.png", "gsm8k_baseline_training_history.png",
           "evaluation_comparison.png", "checkpoint.program.json"]


def gsm8k_data_dir(root: Path, n: int = 4) -> Path:
    """A data folder laid out as ../shared/data: <root>/gsm8k/{train,test}.jsonl, questions "a + b"."""
    folder = root / "gsm8k"
    folder.mkdir(parents=True)
    for split, offset in (("train", 0), ("test", 100)):
        rows = [{"question": f"What is {i + offset} + 2?", "answer": f"{i + offset} + 2 = <<{i + offset}+2="
                 f"{i + offset + 2}>>{i + offset + 2}\n#### {i + offset + 2:,}"} for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    root = gsm8k_data_dir(tmp_path / "data")
    monkeypatch.setenv("PROMPTRL_DATA_DIR", str(root))
    return root


# ----------------------------------------------------------------------------- datasets.gsm8k


def test_load_data_returns_synalinks_tuples_with_thinking_and_answer(tmp_path):
    root = gsm8k_data_dir(tmp_path, n=3)
    (x_train, y_train), (x_test, y_test) = gsm8k.load_data(path=str(root / "gsm8k"))
    assert [x.question for x in x_train] == ["What is 0 + 2?", "What is 1 + 2?", "What is 2 + 2?"]
    assert [y.answer for y in y_test] == [102.0, 103.0, 104.0]
    assert y_train[1].thinking == "1 + 2 = <<1+2=3>>3"  # the reference reasoning, without the #### line
    assert all(isinstance(x, gsm8k.get_input_data_model()) for x in x_train + x_test)
    assert all(isinstance(y, gsm8k.get_output_data_model()) for y in y_train + y_test)
    assert list(gsm8k.get_output_data_model().model_fields) == ["thinking", "answer"]


def test_load_data_without_path_reads_promptrl_data_dir_and_never_downloads(data_dir, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(gsm8k, "download", no_network)
    (x_train, _), (x_test, _) = gsm8k.load_data()
    assert len(x_train) == len(x_test) == 4
    assert len(datasets.load("gsm8k").x_train) == 4  # the config's loader finds the same folder
    (data_dir / "gsm8k" / "test.jsonl").unlink()
    with pytest.raises(UserError, match="PROMPTRL_DATA_DIR") as info:
        gsm8k.load_data()
    assert "test.jsonl" in str(info.value) and "\n" not in str(info.value)


def test_an_explicit_path_wins_over_promptrl_data_dir(tmp_path, data_dir):
    other = gsm8k_data_dir(tmp_path / "other", n=2)
    (x_train, _), _ = gsm8k.load_data(path=str(other / "gsm8k"))
    assert len(x_train) == 2


# ----------------------------------------------------------------------------- utils plots


def test_utils_plots_take_what_the_seed_passes_them(tmp_path, monkeypatch):
    from promptrl import plots

    seen = {}
    for name in ("plot_history", "plot_metrics_with_mean_and_std", "plot_metrics_comparison_with_mean_and_std"):
        original = getattr(plots, name)

        def spy(data, path, title, name=name, original=original):
            seen[name] = (data, Path(path).name, title)
            return original(data, path, title=title)

        monkeypatch.setattr(plots, name, spy)

    runs = [{"reward": 0.5, "failures": 0}, {"reward": 0.7, "failures": 1}]
    path = promptrl.utils.plot_metrics_with_mean_and_std(runs, to_folder=tmp_path, title="Evaluation without training")
    assert path == tmp_path / "evaluation_metrics_with_mean_and_std.png" and path.read_bytes()[:8] == PNG_MAGIC
    assert seen["plot_metrics_with_mean_and_std"] == ({"runs": runs}, path.name, "Evaluation without training")
    saved = {"runs": runs, "mean": {"reward": 0.6}, "std": {"reward": 0.1}}  # a baseline.json passes as it is
    promptrl.utils.plot_metrics_with_mean_and_std(saved, to_folder=tmp_path)
    assert seen["plot_metrics_with_mean_and_std"][0] is saved

    path = promptrl.utils.plot_metrics_comparison_with_mean_and_std(
        {"without_training": runs, "with_training": runs[::-1]}, to_folder=tmp_path, to_file="cmp.png")
    assert path == tmp_path / "cmp.png" and path.read_bytes()[:8] == PNG_MAGIC
    assert seen["plot_metrics_comparison_with_mean_and_std"][0] == {"without_training": {"runs": runs},
                                                                    "with_training": {"runs": runs[::-1]}}

    from promptrl.trainer import History

    history = History()
    for epoch, value in enumerate([0.25, 0.5]):
        history.on_epoch_end(epoch, {"reward": value, "val_reward": value + 0.1})
    path = promptrl.utils.plot_history(history, to_folder=tmp_path, to_file="h.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    records = promptrl.plots.history_records(seen["plot_history"][0])  # what the plot draws
    assert [r["epoch"] for r in records] == [1, 2]  # epochs counted from 1, as in history.jsonl
    assert [r["val_reward"] for r in records] == [0.35, 0.6]
    promptrl.utils.plot_history({"reward": [0.1, 0.2], "val_reward": [0.2, 0.3]}, to_folder=tmp_path)  # Keras dict
    assert [r["epoch"] for r in seen["plot_history"][0]] == [1, 2]


# ----------------------------------------------------------------------------- the seed script


def test_seed_script_differs_from_synalinks_only_by_import_and_model():
    code = [line for line in SCRIPT.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "import promptrl as synalinks" in code
    assert [line.strip() for line in code if "promptrl" in line or "smollm2" in line] == [
        "import promptrl as synalinks", 'model="local/smollm2-135m",']


def answer_sums(messages, output_model):
    """A scripted student: right on "What is N + 2?" once its prompt holds a few-shot example."""
    n = int(last_user_input(messages)["question"].split()[2])
    shown = any(m["role"] == "assistant" for m in messages)
    return {"thinking": f"{n} + 2", "answer": float(n + 2) if shown else 0.0}


def test_seed_script_runs_on_promptrl_and_writes_its_plots(data_dir, tmp_path, monkeypatch):
    """The script as it is (run as __main__), with the test's scripted LM in place of the embedded one."""
    models = []

    def scripted(**settings):
        assert settings["model"] == "local/smollm2-135m"
        models.append(ScriptedLanguageModel(answer_sums, **{**settings, "model": "scripted"}))
        return models[-1]

    monkeypatch.setattr(promptrl, "LanguageModel", scripted)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    folder = tmp_path / "examples" / "training_programs"
    for name in OUTPUTS:
        assert (folder / name).is_file(), name
        if name.endswith(".png"):
            assert (folder / name).read_bytes()[:8] == PNG_MAGIC
    checkpoint = json.loads((folder / "checkpoint.program.json").read_text())
    assert checkpoint["name"] == "gsm8k_baseline"
    # 3 baseline + 3 final runs on NB_SAMPLES=2 test examples, 2 epochs x (2 train + 2 validation)
    assert len(models[0].requests) == 3 * 2 + 2 * (2 + 2) + 3 * 2


@pytest.mark.integration
def test_seed_script_runs_offline_on_the_embedded_model(tmp_path):
    """The unchanged script in its own process: embedded SmolLM2-135M, a 2-example GSM8K folder."""
    root = gsm8k_data_dir(tmp_path / "data", n=2)
    env = {**os.environ, "PROMPTRL_DATA_DIR": str(root), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in OUTPUTS:
        assert (tmp_path / "examples" / "training_programs" / name).is_file(), name
