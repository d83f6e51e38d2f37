"""Config -> library objects: dataset splits, program, reward and metrics, optimizer.

Each config node maps to a library class or function through `_target_`; errors a user can
cause come out as one-line UserErrors naming the config key.
"""

from __future__ import annotations

import difflib
import inspect
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from promptrl.datasets import Dataset
from promptrl.errors import UserError
from promptrl.registry import register_module, trust_modules


def instantiate_node(node, what: str, **kwargs):
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        inner = cause
        while inner is not None:  # a UserError raised by the target reaches the user unchanged
            if isinstance(inner, UserError):
                raise inner from None
            inner = inner.__cause__
        unexpected = _unexpected_setting(cause, node, what)
        if unexpected:
            raise UserError(unexpected) from None
        first_line = str(error).strip().splitlines()[0]
        raise UserError(f"cannot build {what}: {first_line} {cause or ''}; check the '{what}' config") from None
    except MissingMandatoryValue as error:
        key = f"{what}.{error.full_key}"
        raise UserError(f"missing value for {key}; set it on the command line: {key}=...") from None


_UNEXPECTED = re.compile(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")


def _unexpected_setting(cause, node, what: str) -> str | None:
    """`optimizer.kk is not a setting of RandomFewShot: did you mean optimizer.k? ...` for a key the
    class does not take (Hydra only says the constructor got an unexpected keyword)."""
    found = _UNEXPECTED.search(str(cause)) if isinstance(cause, TypeError) else None
    target = node.get("_target_") if isinstance(node, dict) else None
    if not found or not isinstance(target, str):
        return None
    class_name, key = found.groups()
    module_name, _, attribute = target.rpartition(".")
    if attribute != class_name:  # a nested node's class: its key path is not known here
        return f"{class_name} has no setting '{key}' (in the '{what}' config); remove it or fix its name"
    try:
        import importlib

        parameters = [p for p in inspect.signature(getattr(importlib.import_module(module_name), attribute)).parameters
                      if p != "self"]
    except (ImportError, AttributeError, TypeError, ValueError):
        parameters = []
    near = difflib.get_close_matches(key, parameters, n=1)
    hint = f"did you mean {what}.{near[0]}? " if near else ""
    takes = f"(it takes {', '.join(parameters)})" if parameters else ""
    return f"{what}.{key} is not a setting of {class_name}: {hint}{takes}".rstrip()


def container(cfg, key: str | None = None) -> Any:
    """A config node as plain Python, with clear errors for missing values."""
    try:
        node = cfg if key is None else cfg[key]
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    except MissingMandatoryValue as error:
        full_key = error.full_key if key is None or error.full_key.startswith(f"{key}.") else f"{key}.{error.full_key}"
        raise UserError(f"missing value for {full_key}; set it on the command line: {full_key}=...") from None


SIZE_KEYS = ("train_size", "val_size", "test_size")
TEACHER_DEFAULTS = {"temperature": 0.7, "max_tokens": 256}


def check_run_keys(cfg: DictConfig) -> None:
    """The run-wide keys, checked before anything is computed."""
    rules = {"nb_runs": 1, "batch_size": 1, "epochs": 0, "seed": None}
    for key, minimum in rules.items():
        if key not in cfg:
            continue
        value = cfg[key]
        if not isinstance(value, int) or isinstance(value, bool) or (minimum is not None and value < minimum):
            need = "an integer" if minimum is None else f"an integer >= {minimum}"
            raise UserError(f"{key}={value!r} is not valid; {key} must be {need}")
    rate = cfg.get("max_failure_rate", 0.1)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise UserError(f"max_failure_rate={rate!r} is not valid; give a share between 0 and 1, e.g. 0.1")
    for key in SIZE_KEYS:
        value = cfg.dataset.get(key)
        minimum = 1 if key == "test_size" else 0
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
            raise UserError(f"dataset.{key}={value!r} is not valid; it must be an integer >= {minimum} or null (all)")


def build_splits(cfg: DictConfig, seed: int | None = None):
    """(dataset, train, val, test); `seed` (default: cfg.seed) picks the splits."""
    node = container(cfg, "dataset")
    sizes = {key: node.pop(key, None) for key in SIZE_KEYS}
    dataset = instantiate_node(node, "dataset")
    if not isinstance(dataset, Dataset):
        raise UserError(f"dataset target returned {type(dataset).__name__}; it must return a promptrl.datasets.Dataset")
    seed = cfg.seed if seed is None else seed
    # val_size null: all of a validation file/split if the dataset has one, else no validation
    train, val, test = dataset.splits(sizes["train_size"], sizes["val_size"], sizes["test_size"], seed=seed)
    if len(test) == 0:
        raise UserError(f"dataset '{dataset.name}' has no test examples; check the test file or dataset.test_size")
    return dataset, train, val, test


def trust_configured_modules(cfg: DictConfig) -> None:
    """`trusted_modules: [mypkg.modules]` (config or command line, never a checkpoint): the Python
    modules whose module classes and data models saved programs may name."""
    names = container(cfg, "trusted_modules") if "trusted_modules" in cfg else None
    if names is not None and not isinstance(names, (list, str)):
        raise UserError(f"trusted_modules={names!r} is not valid; give a list, e.g. trusted_modules=[mypkg.modules]")
    trust_modules(names)


def build_program(cfg: DictConfig, dataset: Dataset):
    language_model = instantiate_node(container(cfg, "language_model"), "language_model")
    program = instantiate_node(container(cfg, "program"), "program", language_model=language_model,
                               dataset_input=dataset.input_data_model, dataset_output=dataset.output_data_model)
    for module in program.modules:  # the config chose these classes: its checkpoints may name them
        register_module(type(module))
    return program, language_model


JUDGE_DEFAULTS = {"temperature": 0.0}  # a judge should give the same verdict twice


def build_scorers(cfg: DictConfig, program_language_model=None):
    """The reward and the metrics. An LM judge (`LMAsJudge`) left at `language_model: null` gets the
    run's judge LM: `optimizer_language_model` if set, else a copy of the program's LM (built from
    `cfg.language_model` when not given), at JUDGE_DEFAULTS and at least 256 max_tokens for its
    critique. Every such judge shares that one instance, accounted apart (judge_models)."""
    from promptrl.rewards import LMAsJudge

    judge_lm = None

    def default_judge_lm():
        nonlocal judge_lm
        if judge_lm is None:
            spec = container(cfg, "optimizer_language_model") if cfg.get("optimizer_language_model") else None
            if spec:
                judge_lm = instantiate_node({**spec, **JUDGE_DEFAULTS} if isinstance(spec, dict) else spec,
                                            "optimizer_language_model")
            else:
                base = program_language_model or instantiate_node(container(cfg, "language_model"), "language_model")
                judge_lm = base.clone(**JUDGE_DEFAULTS, max_tokens=max(base.max_tokens or 0, 256))
        return judge_lm

    def build(node, what):
        scorer = instantiate_node(node, what)
        if isinstance(scorer, LMAsJudge) and scorer.language_model is None:
            scorer.language_model = default_judge_lm()
        return scorer

    reward = build(container(cfg, "reward"), "reward")
    metrics = [build(node, f"metrics.{name}") for name, node in (container(cfg, "metrics") or {}).items()]
    return reward, metrics


def judge_models(scorers, program_models=()) -> dict:
    """The LMs of the judges among `scorers` (a reward and metrics), each once and none of
    `program_models`: {"judge": lm, "judge_1": ...} - the roles their usage and budget go under."""
    models = []
    for scorer in scorers:
        lm = getattr(scorer, "language_model", None)
        if lm is not None and all(lm is not m for m in [*models, *program_models]):
            models.append(lm)
    return {f"judge_{i}" if i else "judge": lm for i, lm in enumerate(models)}


def build_optimizer(cfg: DictConfig, program_language_model):
    """The optimizer, and its teacher LM for optimizers that write prompts (None otherwise).

    The teacher is `optimizer.language_model`, else `optimizer_language_model`, else a copy of the
    program's LM at TEACHER_DEFAULTS (proposals need some diversity, critiques some room).
    """
    node = container(cfg, "optimizer") if "optimizer" in cfg else None
    if not node:
        return None, None
    kwargs = {}
    if "language_model" in node:
        spec = node.pop("language_model") or container(cfg, "optimizer_language_model")
        # Defaulting to the program's model still gets its own instance, so its usage is accounted apart.
        kwargs["language_model"] = (instantiate_node(spec, "optimizer_language_model") if spec
                                    else program_language_model.clone(**TEACHER_DEFAULTS))
    return instantiate_node(node, "optimizer", **kwargs), kwargs.get("language_model")


def build_budget(cfg: DictConfig):
    """`budget: {max_calls, max_tokens, max_cost, reserve_final, roles: {optimizer: {max_cost: ..}}}`."""
    from promptrl.engine.budget import Budget

    node = container(cfg, "budget") if "budget" in cfg else {}
    if not isinstance(node or {}, dict):
        raise UserError(f"budget={node!r} is not valid; give a mapping, e.g. budget.max_calls=1000")
    node = dict(node or {})
    reserve_final = node.pop("reserve_final", False)
    if not isinstance(reserve_final, bool):
        raise UserError(f"budget.reserve_final={reserve_final!r} is not valid; use true or false")
    try:
        return Budget(**node), reserve_final
    except TypeError as error:
        raise UserError(f"budget: {error}; it takes max_calls, max_tokens, max_cost, reserve_final, roles") from None
