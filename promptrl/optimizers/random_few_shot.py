"""RandomFewShot: each generator's examples become k demonstrations sampled among its k_best best-rewarded
predictions, topped up with labelled training examples when too few predictions are rewarded."""

from __future__ import annotations

from promptrl.checks import check_number
from promptrl.optimizers.base import Optimizer
from promptrl.optimizers.demos import (check_demos, input_key, labelled_demo, output_generator_names,
                                       reads_program_input_only)


class RandomFewShot(Optimizer):
    """Keep every scored prediction of each generator; after each training batch, set the
    generator's few-shot examples to `k` demonstrations.

    `demos` says where they come from:
    - `predictions`: sampled among the `k_best` best-rewarded predictions. A prediction enters the
      pool with the reward of the example it was part of (paired by example index); only rewards
      above `min_reward` are eligible, so a wrong answer never becomes a demonstration; one entry
      is kept per distinct input (its best).
    - `labels`: training examples with their ground-truth output (see optimizers.demos).
    - `mixed` (default): fully rewarded predictions first, then labelled examples, then partly
      rewarded predictions (a graded reward: a label beats an answer that was only partly right), so
      a task the model gets 0 % right still gets k demonstrations.
    """

    def __init__(self, k: int = 3, k_best: int = 10, min_reward: float = 0.0, demos: str = "mixed",
                 seed: int | None = 0):
        super().__init__(seed)
        check_number("RandomFewShot", "k", k, 0, integer=True)
        check_number("RandomFewShot", "k_best", k_best, 1, integer=True)
        check_number("RandomFewShot", "min_reward", min_reward)
        check_demos("RandomFewShot", demos)
        self.k = k
        self.k_best = k_best
        self.min_reward = min_reward
        self.demos = demos
        self.pool: dict[str, dict[str, dict]] = {}  # generator -> input key -> {input, output, reward}
        self.labelled: dict[str, dict[str, dict]] = {}  # generator -> input key -> {input, output}

    def record(self, predictions, program=None) -> None:
        for prediction in predictions:
            if prediction.reward is None:
                continue
            for step in prediction.trace:
                pool = self.pool.setdefault(step["module"], {})
                key = input_key(step["input"])
                entry = {"input": step["input"], "output": step["output"], "reward": prediction.reward}
                if key not in pool or entry["reward"] >= pool[key]["reward"]:
                    pool[key] = entry
        if program is not None and self.demos != "predictions":
            self.record_labels(program, predictions)

    def record_labels(self, program, predictions) -> None:
        outputs = output_generator_names(program)
        for generator in program.generators:
            if generator.name not in outputs:
                continue
            input_only = reads_program_input_only(program, generator)
            for prediction in predictions:
                demo = labelled_demo(generator, prediction, input_only)
                if demo is not None:
                    self.labelled.setdefault(generator.name, {})[input_key(demo["input"])] = demo

    def best(self, module_name: str) -> list[dict]:
        """The k_best eligible entries of a generator, best reward first; ties broken at random
        (seeded), so with 0/1 rewards the pool is not frozen on the first correct inputs seen."""
        entries = [e for e in self.pool.get(module_name, {}).values() if e["reward"] > self.min_reward]
        tie_break = {id(e): self.rng.random() for e in entries}
        return sorted(entries, key=lambda e: (-e["reward"], tie_break[id(e)]))[: self.k_best]

    def choose(self, module_name: str) -> list[dict]:
        """Up to k demonstrations for a generator, from the sources `demos` allows."""
        candidates = self.best(module_name) if self.demos != "labels" else []
        if self.demos == "mixed":  # a ground-truth label beats a prediction that was only partly right
            perfect = [e for e in candidates if e["reward"] >= 1.0]
            tiers = [perfect, None, [e for e in candidates if e["reward"] < 1.0]]
        else:
            tiers = [candidates] if self.demos == "predictions" else [None]
        chosen: list[dict] = []
        for tier in tiers:
            if tier is None:  # the labelled examples' turn
                taken = {input_key(e["input"]) for e in chosen}
                tier = [e for key, e in self.labelled.get(module_name, {}).items() if key not in taken]
            chosen += self.rng.sample(tier, min(self.k - len(chosen), len(tier)))
        return [{"input": e["input"], "output": e["output"]} for e in chosen]

    def select_examples(self, program) -> None:
        for generator in program.generators:
            chosen = self.choose(generator.name)
            if chosen or self.k == 0:  # nothing to show yet: keep the current examples
                generator.examples = chosen

    async def on_batch_end(self, program, predictions) -> None:
        self.step += 1
        self.record(predictions, program)
        self.select_examples(program)

    def get_config(self) -> dict:
        return {"k": self.k, "k_best": self.k_best, "min_reward": self.min_reward, "demos": self.demos,
                "seed": self.seed}

    def get_state(self) -> dict:
        return {**super().get_state(), "pool": {m: list(p.values()) for m, p in self.pool.items()},
                "labelled": {m: list(p.values()) for m, p in self.labelled.items()}}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.pool = {module: {input_key(e["input"]): e for e in entries}
                     for module, entries in state.get("pool", {}).items()}
        self.labelled = {module: {input_key(e["input"]): e for e in entries}
                         for module, entries in state.get("labelled", {}).items()}
