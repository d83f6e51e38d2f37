"""Optimizer base: the hooks fit() calls, shared scoring helpers, and JSON state for checkpoints."""

from __future__ import annotations

import json
import random
import statistics

from promptrl.errors import PredictionError


class Optimizer:
    """Updates a program's trainable variables (instructions, examples) from scored predictions.

    fit() calls `on_train_begin` once, `on_batch_end` after each scored training batch,
    and `on_epoch_end` after validation.
    """

    def __init__(self, seed: int | None = 0):
        self.seed = seed
        self.rng = random.Random(seed)
        self.program = None
        self.validation_data = None
        self.step = 0
        self.batches_seen = 0
        self.failures = 0  # optimizer-LM calls that failed and were skipped
        # The seed fit() validates with (set by fit): scoring prompts on the validation data with it
        # gives the val_reward fit would report, and replays fit's own validation calls from the cache.
        self.validation_seed: int | None = None

    def attach(self, program) -> None:
        self.program = program

    async def on_train_begin(self, program, train_data, validation_data) -> None:
        self.validation_data = validation_data

    async def on_batch_end(self, program, predictions) -> None:
        pass

    async def on_epoch_end(self, program, epoch: int, logs: dict) -> None:
        pass

    def get_config(self) -> dict:
        return {"seed": self.seed}

    def planned_calls(self, batches: int, generators: int, val_size: int, batch_size: int, epochs: int = 1) -> dict:
        """The LM calls this optimizer makes over `batches` training batches (in `epochs` epochs) of a
        program with `generators` generators: {"teacher": n, "scoring": n, "upper_bound": bool} (a dry
        run's plan)."""
        return {"teacher": 0, "scoring": 0, "upper_bound": False}

    def get_state(self) -> dict:
        """Everything needed to resume: config, counters and learned state (JSON only)."""
        return {"config": self.get_config(), "step": self.step, "batches_seen": self.batches_seen,
                "failures": self.failures}

    def set_state(self, state: dict) -> None:
        self.step = state.get("step", 0)
        self.batches_seen = state.get("batches_seen", 0)
        self.failures = state.get("failures", 0)

    def count_batch(self, every_n_batches: int = 1) -> bool:
        """Count a training batch; True when a step is due (every `every_n_batches` batches)."""
        self.batches_seen += 1
        return self.batches_seen % every_n_batches == 0

    # ---- helpers for optimizers that write instructions ---------------------------------------
    def minibatch(self, size: int):
        """A random minibatch of the validation data (or None without validation data)."""
        if not self.validation_data or not len(self.validation_data[0]):
            return None
        x, y = self.validation_data
        idx = self.rng.sample(range(len(x)), min(size, len(x)))
        return [x[i] for i in idx], [y[i] for i in idx]

    async def score_instructions(self, program, generator, instructions: str | None, batch) -> float:
        """Program reward on `batch` with `generator` using `instructions` (then restored)."""
        logs, _ = await self.evaluate_candidate(program, {generator.name: {"instructions": instructions}}, batch)
        return logs["reward"]

    async def evaluate_candidate(self, program, variables: dict[str, dict], batch, trace: bool = False,
                                 seed: int | None = None):
        """(logs, predictions) of the program on `batch` with `variables` ({module name: {"instructions":
        ..., "examples": [...]}}, either key optional) set for the run, then restored; sampled with
        `seed` (default: the optimizer's).

        Only the reward is computed (no metrics); each prediction keeps its reward, the reward's
        feedback and, with `trace`, every module's input and output. The program calls are accounted
        under the role "optimizer_scoring" in the program LM's usage."""
        from promptrl.language_model import usage_role
        from promptrl.trainer import run_scored, summarize

        saved, saved_metrics = program.trainable_variables, program.metrics
        program.metrics = []
        try:
            for name, values in variables.items():
                program.get_module(name).set_variables(values)
            with usage_role("optimizer_scoring"):
                x, y = batch
                seed = self.seed if seed is None else seed
                predictions = await run_scored(program, x, y, range(len(x)), seed, trace)
            return summarize(predictions, program), predictions
        finally:
            program.set_trainable_variables(saved)
            program.metrics = saved_metrics

    async def ask(self, language_model, messages: list[dict], output_model, seed: int | None = None):
        """One optimizer-LM call; a failure is counted and returns None (never fatal)."""
        try:
            return await language_model.generate(messages, output_model, seed=seed)
        except PredictionError:
            self.failures += 1
            return None


def describe_fields(model) -> str:
    return ", ".join(f"`{name}`" + (f" ({info.description})" if info.description else "")
                     for name, info in model.model_fields.items())


def as_json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def mean(values) -> float:
    values = list(values)
    return statistics.fmean(values) if values else 0.0
