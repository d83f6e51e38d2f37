"""promptrl: train LM programs with rewards - the prompts are the weights."""

from promptrl import callbacks, datasets, metrics, optimizers, rewards, utils
from promptrl.data_model import DataModel, Field, data_model_from_spec
from promptrl.errors import PredictionError, UserError
from promptrl.language_model import LanguageModel
from promptrl.modules import ChainOfThought, Generator, Input, Module
from promptrl.program import Program
from promptrl.registry import register_data_model, register_module, trust_modules

__version__ = "0.1.0"

__all__ = [
    "ChainOfThought", "DataModel", "Field", "Generator", "Input", "LanguageModel", "Module", "PredictionError",
    "Program", "UserError", "callbacks", "data_model_from_spec", "datasets", "metrics", "optimizers",
    "register_data_model", "register_module", "rewards", "trust_modules", "utils",
]
