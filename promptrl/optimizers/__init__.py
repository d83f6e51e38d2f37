"""Optimizers update a program's prompts (instructions, few-shot examples) from rewards."""

from promptrl.optimizers.base import Optimizer
from promptrl.optimizers.gepa import GEPA
from promptrl.optimizers.mipro import MIPRO
from promptrl.optimizers.opro import OPRO, FewShotOPRO
from promptrl.optimizers.random_few_shot import RandomFewShot
from promptrl.optimizers.textgrad import TGD, TextGrad

__all__ = ["GEPA", "MIPRO", "TGD", "FewShotOPRO", "OPRO", "Optimizer", "RandomFewShot", "TextGrad"]
