"""promptrl: train LM programs with rewards - the prompts are the weights."""

import importlib

from promptrl.data_model import DataModel, Field, data_model_from_spec
from promptrl.errors import PredictionError, UserError
from promptrl.language_model import LanguageModel
from promptrl.modules import ChainOfThought, Generator, Input, Module
from promptrl.program import Program
from promptrl.registry import register_data_model, register_module, trust_modules

__version__ = "0.1.0"

# Imported on first use (`promptrl.rewards.ExactMatch`, `from promptrl import datasets`): a program
# calling an endpoint does not pay for the dataset loaders, optimizers and metrics at import.
_LAZY = ("callbacks", "datasets", "metrics", "optimizers", "rewards", "utils")


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"promptrl.{name}")
    raise AttributeError(f"module 'promptrl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ChainOfThought", "DataModel", "Field", "Generator", "Input", "LanguageModel", "Module", "PredictionError",
    "Program", "UserError", "callbacks", "data_model_from_spec", "datasets", "metrics", "optimizers",
    "register_data_model", "register_module", "rewards", "trust_modules", "utils",
]
