"""Optimizers update a program's prompts (instructions, few-shot examples) from rewards."""

from promptrl.optimizers.base import Optimizer
from promptrl.optimizers.random_few_shot import RandomFewShot

__all__ = ["Optimizer", "RandomFewShot"]
