"""RandomFewShot: each generator's examples become k predictions sampled among its k_best best-rewarded."""

from __future__ import annotations

import json

from promptrl.checks import check_number
from promptrl.optimizers.base import Optimizer


class RandomFewShot(Optimizer):
    """Keep every scored prediction of each generator; after each training batch, set the
    generator's few-shot examples to `k` predictions sampled among the `k_best` best-rewarded.

    A prediction enters the pool with the reward of the example it was part of (paired by
    example index). Only predictions whose reward is above `min_reward` are eligible, so a
    wrong answer never becomes a demonstration; one entry is kept per distinct input (its best).
    """

    def __init__(self, k: int = 3, k_best: int = 10, min_reward: float = 0.0, seed: int | None = 0):
        super().__init__(seed)
        check_number("RandomFewShot", "k", k, 0, integer=True)
        check_number("RandomFewShot", "k_best", k_best, 1, integer=True)
        check_number("RandomFewShot", "min_reward", min_reward)
        self.k = k
        self.k_best = k_best
        self.min_reward = min_reward
        self.pool: dict[str, dict[str, dict]] = {}  # generator -> input key -> {input, output, reward}

    def record(self, predictions) -> None:
        for prediction in predictions:
            if prediction.reward is None:
                continue
            for step in prediction.trace:
                pool = self.pool.setdefault(step["module"], {})
                key = json.dumps(step["input"], sort_keys=True)
                entry = {"input": step["input"], "output": step["output"], "reward": prediction.reward}
                if key not in pool or entry["reward"] >= pool[key]["reward"]:
                    pool[key] = entry

    def best(self, module_name: str) -> list[dict]:
        """The k_best eligible entries of a generator, best reward first; ties broken at random
        (seeded), so with 0/1 rewards the pool is not frozen on the first correct inputs seen."""
        entries = [e for e in self.pool.get(module_name, {}).values() if e["reward"] > self.min_reward]
        tie_break = {id(e): self.rng.random() for e in entries}
        return sorted(entries, key=lambda e: (-e["reward"], tie_break[id(e)]))[: self.k_best]

    def select_examples(self, program) -> None:
        for generator in program.generators:
            candidates = self.best(generator.name)
            if not candidates:
                continue
            chosen = self.rng.sample(candidates, min(self.k, len(candidates)))
            generator.examples = [{"input": e["input"], "output": e["output"]} for e in chosen]

    async def on_batch_end(self, program, predictions) -> None:
        self.step += 1
        self.record(predictions)
        self.select_examples(program)

    def get_config(self) -> dict:
        return {"k": self.k, "k_best": self.k_best, "min_reward": self.min_reward, "seed": self.seed}

    def get_state(self) -> dict:
        return {**super().get_state(), "pool": {m: list(p.values()) for m, p in self.pool.items()}}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.pool = {
            module: {json.dumps(e["input"], sort_keys=True): e for e in entries}
            for module, entries in state.get("pool", {}).items()
        }
