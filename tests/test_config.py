"""Every option of every config group composes and instantiates; splits never leak."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from promptrl.cli import config_dir
from promptrl.datasets import Dataset
from promptrl.errors import UserError
from promptrl.experiment.build import instantiate_node, build_optimizer, build_program, build_scorers, build_splits, container
from promptrl.language_model import LanguageModel
from promptrl.program import Program
from promptrl.rewards import Reward

CONF = config_dir()
GROUPS = {g.name: sorted(f.stem for f in g.glob("*.yaml")) for g in CONF.iterdir() if g.is_dir() and g.name != "hydra"}


def _compose(*overrides, config_name="train"):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=True)


def _cfg(*overrides):
    cfg = _compose(*overrides)
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)  # resolves ${hydra:runtime.output_dir}
    return cfg


@pytest.mark.parametrize("option", GROUPS["language_model"])
def test_language_model_options_instantiate(option):
    cfg = _cfg(f"language_model={option}")
    lm = instantiate_node(container(cfg, "language_model"), "language_model")
    assert isinstance(lm, LanguageModel) and lm.model == cfg.language_model.model


@pytest.mark.parametrize("option", [o for o in GROUPS["program"] if o != "graph"])  # needs a graph: tests/test_graph.py
def test_program_options_build(option):
    cfg = _cfg(f"program={option}")
    dataset, *_ = build_splits(cfg)
    program, _ = build_program(cfg, dataset)
    assert isinstance(program, Program) and program.generators


@pytest.mark.parametrize("option", GROUPS["reward"])
def test_reward_options_instantiate(option):
    reward, metrics = build_scorers(_cfg(f"reward={option}"))
    assert isinstance(reward, Reward) and all(isinstance(m, Reward) for m in metrics)


@pytest.mark.parametrize("option", GROUPS["metrics"])
def test_metrics_options_instantiate(option):
    _, metrics = build_scorers(_cfg(f"metrics={option}"))
    assert all(isinstance(m, Reward) for m in metrics)


@pytest.mark.parametrize("option", GROUPS["optimizer"])
def test_optimizer_options_instantiate(option):
    cfg = _cfg(f"+optimizer={option}")
    lm = LanguageModel()
    optimizer, teacher = build_optimizer(cfg, lm)
    if option == "none":  # the control arm: train runs the baseline only
        assert optimizer is None
        return
    assert type(optimizer).__name__ == cfg.optimizer._target_.rsplit(".", 1)[1]
    if "language_model" in cfg.optimizer:  # the teacher is its own instance: usage accounted apart
        assert teacher is not lm and teacher.model == lm.model


@pytest.mark.parametrize("option", GROUPS["callbacks"])
def test_callbacks_options_instantiate(option):
    cfg = _cfg(f"callbacks={option}")
    callbacks = [instantiate_node(node, name) for name, node in container(cfg, "callbacks").items()]
    assert callbacks and all(hasattr(c, "on_epoch_end") for c in callbacks)


@pytest.mark.parametrize("option", [o for o in GROUPS["dataset"] if o not in ("gsm8k", "jsonl", "csv", "parquet", "hf", "bbh")])  # need files or a task
def test_offline_dataset_options_load(option):
    dataset, train, val, test = build_splits(_cfg(f"dataset={option}"))
    assert isinstance(dataset, Dataset)
    assert (len(train), len(val), len(test)) == (32, 16, 50)


def test_gsm8k_and_jsonl_options_load_from_local_files(tmp_path: Path):
    gsm = tmp_path / "gsm"
    gsm.mkdir()
    def rows(prefix):
        return "".join(f'{{"question": "{prefix}{i}", "answer": "so\\n#### {i},000"}}\n' for i in range(40))

    (gsm / "train.jsonl").write_text(rows("q"))
    (gsm / "test.jsonl").write_text(rows("t"))
    _, train, val, test = build_splits(_cfg("dataset=gsm8k", f"dataset.path={gsm}", "dataset.train_size=8",
                                             "dataset.val_size=4", "dataset.test_size=5"))
    assert test.y[0].answer % 1000 == 0 and len(train) == 8
    (tmp_path / "t.jsonl").write_text("".join(f'{{"question": "q{i}", "answer": "a{i}"}}\n' for i in range(30)))
    (tmp_path / "u.jsonl").write_text("".join(f'{{"question": "q{i}", "answer": "a{i}"}}\n' for i in range(25, 40)))
    _, train, val, test = build_splits(_cfg("dataset=jsonl", f"dataset.train_path={tmp_path / 't.jsonl'}",
                                             f"dataset.test_path={tmp_path / 'u.jsonl'}", "dataset.val_size=4",
                                             "dataset.test_size=10"))
    # q25..q29 are in both files: removed from the train pool (30 - 5 = 25 = 21 train + 4 val)
    assert (len(train), len(val), len(test)) == (21, 4, 10)
    with pytest.raises(UserError, match="lower the sizes"):  # same file for both: no train pool left
        build_splits(_cfg("dataset=jsonl", f"dataset.train_path={tmp_path / 't.jsonl'}",
                          f"dataset.test_path={tmp_path / 't.jsonl'}", "dataset.val_size=4"))


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_splits_share_no_example(seed):
    _, train, val, test = build_splits(_cfg(f"seed={seed}", "dataset.train_size=100", "dataset.val_size=50",
                                            "dataset.test_size=100"))
    keys = [{x.model_dump_json() for x in split.x} for split in (train, val, test)]
    assert not keys[0] & keys[1] and not keys[0] & keys[2] and not keys[1] & keys[2]
    assert [len(k) for k in keys] == [100, 50, 100]


@pytest.mark.parametrize("option", GROUPS["experiment"])
def test_experiments_compose_and_build(option):
    cfg = _cfg(f"+experiment={option}")
    lm = instantiate_node(container(cfg, "language_model"), "language_model")
    optimizer, _ = build_optimizer(cfg, lm)
    assert cfg.task_name == option and isinstance(lm, LanguageModel)
    if "optimizer" in cfg and cfg.optimizer:
        assert optimizer is not None


def test_a_setting_a_class_does_not_take_is_named_with_the_nearest_one():
    with pytest.raises(UserError, match=r"optimizer\.kbest is not a setting of RandomFewShot: did you mean "
                                        r"optimizer\.k_best\? \(it takes k, k_best"):
        instantiate_node({"_target_": "promptrl.optimizers.RandomFewShot", "kbest": 3}, "optimizer")
    # in a nested node, the class and the config it sits in
    nested = {"_target_": "promptrl.rewards.LMAsJudge",
              "language_model": {"_target_": "promptrl.rewards.ExactMatch", "bogus": 1}}
    with pytest.raises(UserError, match=r"ExactMatch has no setting 'bogus' \(in the 'reward' config\)"):
        instantiate_node(nested, "reward")
