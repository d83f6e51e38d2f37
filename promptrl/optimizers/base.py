"""Optimizer base: the hooks fit() calls, and JSON-serializable state for checkpoints."""

from __future__ import annotations

import random


class Optimizer:
    """Updates a program's trainable variables (instructions, examples) from scored predictions.

    fit() calls `on_train_begin` once, `on_batch_end` after each scored training batch,
    and `on_epoch_end` after validation.
    """

    def __init__(self, seed: int | None = 0):
        self.seed = seed
        self.rng = random.Random(seed)
        self.program = None

    def attach(self, program) -> None:
        self.program = program

    async def on_train_begin(self, program, train_data, validation_data) -> None:
        pass

    async def on_batch_end(self, program, predictions) -> None:
        pass

    async def on_epoch_end(self, program, epoch: int, logs: dict) -> None:
        pass

    def get_config(self) -> dict:
        return {"seed": self.seed}

    def get_state(self) -> dict:
        """Everything needed to resume: config and learned state (JSON only)."""
        return {"config": self.get_config()}

    def set_state(self, state: dict) -> None:
        pass
