"""GEPA (Agrawal et al. 2025, "GEPA: Reflective Prompt Evolution Can Outperform Reinforcement
Learning", arXiv 2507.19457): reflective prompt evolution over a Pareto front of candidates.

A candidate is every generator's instruction (few-shot examples stay as they are), scored on each
example of the Pareto set (the validation data, capped at `val_size`). A step samples a parent from
the Pareto front (candidates best on at least one example, dominated ones removed, drawn in
proportion to how many examples they are best on), picks one generator round-robin, runs the
parent on a minibatch of the training batch with traces, and asks the optimizer LM to rewrite that
generator's instruction from its inputs, outputs, rewards and the reward's feedback. The child is
run on the same minibatch and kept only if its reward sum is strictly higher; then it is scored on
the Pareto set and joins the pool. After a kept child, the next step may merge two front candidates
that descend from a common ancestor, taking each generator from the one that changed it
(system-aware merge). The program's prompts become the candidate with the best mean Pareto score,
set in `on_batch_end` only, so a checkpoint always holds the prompts that were validated.

Built on promptrl's own pieces, by measurement: the `gepa` package (0.1.4) installs with no required
dependency (2.7 MB, ~24k lines, `import gepa` 0.08-0.10 s here), but its adapter's `evaluate` is
synchronous, its engine owns the loop (`run()` until a stopper) and it saves its state with pickle.
"""

from __future__ import annotations

import random

from promptrl.checks import check_number
from promptrl.data_model import DataModel, Field
from promptrl.errors import UserError
from promptrl.optimizers.base import Optimizer, as_json, describe_fields
from promptrl.seeding import derive_seed

PERFECT = 1.0  # a minibatch rewarded this on every example leaves nothing to reflect on: no teacher call


class Reflection(DataModel):
    instruction: str = Field(description="The new instruction for the step")


def _rewards(predictions) -> list[float | None]:
    """Per-example rewards; None for a call that got no answer (left out, never a zero)."""
    return [None if p.failure == "infrastructure" else float(p.reward or 0.0) for p in predictions]


def _mean(scores) -> float:
    answered = [s for s in scores if s is not None]
    return sum(answered) / len(answered) if answered else 0.0


class GEPA(Optimizer):
    """Reflective prompt evolution with a Pareto front of candidates.

    - `language_model`: the optimizer ("teacher") LM that reflects and writes instructions.
    - `minibatch_size`: training examples a parent and its child are compared on (3-5 in the paper).
    - `max_steps`: GEPA steps (a mutation or a merge) per due training batch.
    - `every_n_batches`: steps after every n training batches.
    - `use_merge`, `max_merges`: system-aware merges of two front candidates (programs with several
      generators), at most `max_merges` per run.
    - `val_size`: the most validation examples in the Pareto set (None: all of them). Without
      validation data the training data is the Pareto set.
    """

    def __init__(self, language_model, minibatch_size: int = 3, max_steps: int = 1, every_n_batches: int = 1,
                 use_merge: bool = True, max_merges: int = 5, val_size: int | None = None, seed: int | None = 0):
        super().__init__(seed)
        if language_model is None:
            raise UserError("GEPA needs an optimizer language_model")
        for key, value, minimum in (("minibatch_size", minibatch_size, 1), ("max_steps", max_steps, 1),
                                    ("every_n_batches", every_n_batches, 1), ("max_merges", max_merges, 0)):
            check_number("GEPA", key, value, minimum, integer=True)
        if val_size is not None:
            check_number("GEPA", "val_size", val_size, 1, integer=True)
        if not isinstance(use_merge, bool):
            raise UserError(f"GEPA: use_merge={use_merge!r} is not valid; it must be true or false")
        self.language_model = language_model
        self.minibatch_size = minibatch_size
        self.max_steps = max_steps
        self.every_n_batches = every_n_batches
        self.use_merge = use_merge
        self.max_merges = max_merges
        self.val_size = val_size
        self.train_data = None
        # Every candidate: {"instructions": {generator: text}, "scores": [per Pareto example], "parents",
        # "origin": seed|mutation|merge, "module": what changed, "step", "next_module": round-robin pointer}
        self.pool: list[dict] = []
        self.merges = 0  # merges attempted
        self.merge_due = False  # the last step kept a new candidate: the next one tries a merge
        self.tried_merges: list[list[int]] = []  # [i, j, ancestor] already tried
        self.attempts: list[dict] = []  # every step: what was tried, the minibatch sums, kept or not

    # ---- the Pareto set and front -------------------------------------------------------------
    async def on_train_begin(self, program, train_data, validation_data) -> None:
        await super().on_train_begin(program, train_data, validation_data)
        self.train_data = train_data

    def pareto_set(self):
        data = self.validation_data if self.validation_data and len(self.validation_data[0]) else self.train_data
        if not data or not len(data[0]):
            return None
        x, y = data
        n = len(x) if self.val_size is None else min(self.val_size, len(x))
        return list(x[:n]), list(y[:n])

    def mean_score(self, index: int) -> float:
        return _mean(self.pool[index]["scores"])

    def wins(self) -> list[set[int]]:
        """For each candidate, the Pareto examples it is best on (ties included)."""
        wins: list[set[int]] = [set() for _ in self.pool]
        for e in range(min((len(c["scores"]) for c in self.pool), default=0)):
            scores = [c["scores"][e] for c in self.pool]
            answered = [s for s in scores if s is not None]
            if answered:
                top = max(answered)
                for i, s in enumerate(scores):
                    if s == top:
                        wins[i].add(e)
        return wins

    def front(self) -> dict[int, int]:
        """{candidate: examples it is best on} for the non-dominated candidates. `a` is dominated by `b`
        when `b` is best on every example `a` is best on, and on more - or on the same ones with a
        higher mean score (an exact tie: the older one stays)."""
        wins = self.wins()
        key = [(self.mean_score(i), -i) for i in range(len(self.pool))]

        def dominated(a: int) -> bool:
            return any(b != a and wins[a] <= wins[b] and (wins[a] < wins[b] or key[b] > key[a])
                       for b in range(len(self.pool)))
        return {i: len(w) for i, w in enumerate(wins) if w and not dominated(i)}

    def select_parent(self, rng: random.Random) -> int:
        front = self.front()
        if not front:
            return self.best_index()
        candidates = sorted(front)
        return rng.choices(candidates, weights=[front[i] for i in candidates])[0]

    def best_index(self) -> int:
        return max(range(len(self.pool)), key=lambda i: (self.mean_score(i), -i))

    def ancestors(self, index: int) -> set[int]:
        found: set[int] = set()
        stack = list(self.pool[index]["parents"])
        while stack:
            parent = stack.pop()
            if parent not in found:
                found.add(parent)
                stack.extend(self.pool[parent]["parents"])
        return found

    # ---- running candidates ---------------------------------------------------------------------
    async def run(self, program, instructions: dict[str, str], batch, trace: bool = False, seed: int | None = None):
        variables = {name: {"instructions": text} for name, text in instructions.items()}
        _, predictions = await self.evaluate_candidate(program, variables, batch, trace=trace, seed=seed)
        return predictions

    async def score_pareto(self, program, instructions: dict[str, str]) -> list[float | None]:
        """Rewards on each Pareto-set example, sampled as fit validates (a candidate's mean is its
        val_reward; the starting prompts replay fit's own validation calls)."""
        return _rewards(await self.run(program, instructions, self.pareto_set(), seed=self.validation_seed))

    async def add(self, program, instructions: dict[str, str], parents: list[int], origin: str,
                  module: str | None, next_module: int = 0, scores: list | None = None) -> int:
        """Score a candidate on the Pareto set (unless `scores` are given) and put it in the pool."""
        if scores is None:
            scores = await self.score_pareto(program, instructions)
        self.pool.append({"instructions": dict(instructions), "scores": scores, "parents": parents,
                          "origin": origin, "module": module, "step": self.step, "next_module": next_module})
        return len(self.pool) - 1

    def in_pool(self, instructions: dict[str, str]) -> bool:
        return any(c["instructions"] == instructions for c in self.pool)

    # ---- reflective mutation --------------------------------------------------------------------
    def reflective_records(self, module: str, predictions) -> list[dict]:
        """The module's view of each example: its input and output, the reward and its feedback."""
        records = []
        for p in predictions:
            step = next((s for s in p.trace if s["module"] == module), None)
            if step is not None:
                record = {"input": step["input"], "output": step["output"]}
            else:  # the step failed, or one before it: the example's input and why
                record = {"input": p.x.model_dump(), "output": f"(no valid output: {p.error or 'a step failed'})"}
            record["reward"] = p.reward
            record["feedback"] = p.feedback or f"expected program output: {as_json(p.y_true.model_dump())}"
            records.append(record)
        return records

    def reflection_prompt(self, generator, instruction: str, records: list[dict]) -> list[dict]:
        lines = [f'A language model step named "{generator.name}" receives '
                 f"{describe_fields(generator.input_data_model)} and must answer with "
                 f"{describe_fields(generator.output_data_model)}. It was given this instruction:",
                 "```", instruction, "```", "",
                 "Here are inputs it received, its outputs, the reward of the program's result (1 is best) "
                 "and feedback on it:", ""]
        for n, record in enumerate(records, 1):
            reward = "none" if record["reward"] is None else f"{record['reward']:.2f}"
            lines += [f"example {n}", f"input: {as_json(record['input'])}", f"output: {as_json(record['output'])}",
                      f"reward: {reward}", f"feedback: {record['feedback']}", ""]
        lines.append("Write a new instruction for this step. Infer the task and the input format from the "
                     "examples; use the feedback to find what went wrong and state the facts and rules the step "
                     "needs; keep any strategy that worked. Keep it general: it must work on other inputs.")
        return [{"role": "system", "content": "You are an expert prompt engineer."},
                {"role": "user", "content": "\n".join(lines)}]

    async def mutate(self, program, batch_predictions, rng: random.Random) -> None:
        parent_index = self.select_parent(rng)
        parent = self.pool[parent_index]
        generators = program.generators
        generator = generators[parent["next_module"] % len(generators)]
        parent["next_module"] += 1
        attempt = {"step": self.step, "kind": "mutation", "parent": parent_index, "module": generator.name,
                   "accepted": False}
        self.attempts.append(attempt)
        chosen = rng.sample(batch_predictions, min(self.minibatch_size, len(batch_predictions)))
        minibatch = [p.x for p in chosen], [p.y_true for p in chosen]
        before_predictions = await self.run(program, parent["instructions"], minibatch, trace=True)
        before = _rewards(before_predictions)
        if all(s is not None and s >= PERFECT for s in before):
            attempt["skipped"] = "perfect minibatch"
            return
        current = parent["instructions"][generator.name]
        messages = self.reflection_prompt(generator, current, self.reflective_records(generator.name,
                                                                                       before_predictions))
        answer = await self.ask(self.language_model, messages, Reflection,
                                seed=derive_seed(self.seed, "gepa", self.step, "reflect", generator.name))
        proposed = answer.instruction.strip() if answer else ""
        child = {**parent["instructions"], generator.name: proposed}
        if not proposed or self.in_pool(child):  # nothing new: not paid for again
            attempt["skipped"] = "no proposal" if not proposed else "already in the pool"
            return
        attempt["instruction"] = proposed
        after = _rewards(await self.run(program, child, minibatch))
        both = [i for i in range(len(before)) if before[i] is not None and after[i] is not None]
        attempt["parent_sum"] = sum(before[i] for i in both)
        attempt["child_sum"] = sum(after[i] for i in both)
        if attempt["child_sum"] > attempt["parent_sum"]:  # strictly better on the same minibatch, or not kept
            attempt["accepted"] = True
            attempt["candidate"] = await self.add(program, child, [parent_index], "mutation", generator.name,
                                                  next_module=parent["next_module"])
            self.merge_due = True

    # ---- system-aware merge ---------------------------------------------------------------------
    def merged(self, i: int, j: int, ancestor: int) -> dict[str, str]:
        """Each generator from the candidate that changed it from the ancestor (both did: the better)."""
        a, ci, cj = (self.pool[k]["instructions"] for k in (ancestor, i, j))
        better = ci if self.mean_score(i) >= self.mean_score(j) else cj
        return {name: ci[name] if ci[name] == cj[name] else cj[name] if ci[name] == a[name]
                else ci[name] if cj[name] == a[name] else better[name] for name in a}

    def merge_triplets(self) -> list[tuple[int, int, int]]:
        """(i, j, ancestor) for front candidates i < j, neither descending from the other, with a
        common ancestor no better than either, whose merge is a candidate not yet in the pool."""
        front = sorted(self.front())
        triplets = []
        for n, i in enumerate(front):
            for j in front[n + 1:]:
                up_i, up_j = self.ancestors(i), self.ancestors(j)
                if i in up_j or j in up_i:
                    continue
                for a in sorted(up_i & up_j):
                    if ([i, j, a] in self.tried_merges
                            or self.mean_score(a) > min(self.mean_score(i), self.mean_score(j))
                            or self.in_pool(self.merged(i, j, a))):
                        continue
                    triplets.append((i, j, a))
        return triplets

    async def merge(self, program, rng: random.Random) -> bool:
        """One merge attempt; False when no pair can be merged (the step mutates instead)."""
        self.merge_due = False
        triplets = self.merge_triplets()
        if not triplets:
            return False
        i, j, a = rng.choice(triplets)
        self.merges += 1
        self.tried_merges.append([i, j, a])
        instructions = self.merged(i, j, a)
        scores = await self.score_pareto(program, instructions)
        attempt = {"step": self.step, "kind": "merge", "parents": [i, j], "ancestor": a,
                   "mean": _mean(scores), "accepted": _mean(scores) >= max(self.mean_score(i), self.mean_score(j))}
        if attempt["accepted"]:  # as good as the better parent on the Pareto set (scored there already)
            changed = [n for n in instructions if instructions[n] != self.pool[a]["instructions"][n]]
            attempt["candidate"] = await self.add(program, instructions, [i, j], "merge", ",".join(changed),
                                                  scores=scores)
        self.attempts.append(attempt)
        return True

    # ---- the hook -------------------------------------------------------------------------------
    async def on_batch_end(self, program, predictions) -> None:
        if not self.count_batch(self.every_n_batches) or not predictions or self.pareto_set() is None:
            return
        names = [g.name for g in program.generators]
        if not self.pool or set(self.pool[0]["instructions"]) != set(names):  # the seed candidate
            self.pool, self.merges, self.merge_due, self.tried_merges = [], 0, False, []
            await self.add(program, {g.name: g.instructions or g.default_instructions() for g in program.generators},
                           [], "seed", None)
        for _ in range(self.max_steps):
            self.step += 1
            rng = random.Random(derive_seed(self.seed, "gepa", self.step))
            if self.use_merge and self.merge_due and self.merges < self.max_merges and await self.merge(program, rng):
                continue
            await self.mutate(program, predictions, rng)
        best = self.pool[self.best_index()]["instructions"]
        for generator in program.generators:  # only here, never in on_epoch_end: validation sees these
            if (generator.instructions or generator.default_instructions()) != best[generator.name]:
                generator.instructions = best[generator.name]

    def planned_calls(self, batches: int, generators: int, val_size: int, batch_size: int, epochs: int = 1) -> dict:
        """At most: the seed candidate scored on the Pareto set once; per step one reflection, the parent
        and the child on a minibatch, and the child on the Pareto set (a merge costs only the latter).
        A program run calls every generator. Fewer when a proposal is rejected or skipped."""
        steps = batches // self.every_n_batches * self.max_steps
        pareto = val_size or -(-batches // max(epochs, 1)) * batch_size  # no validation data: the training data
        pareto = pareto if self.val_size is None else min(self.val_size, pareto)
        if not steps or not pareto:
            return {"teacher": 0, "scoring": 0, "upper_bound": True}
        minibatch = min(self.minibatch_size, batch_size)
        return {"teacher": steps,
                "scoring": (pareto + steps * (2 * minibatch + pareto)) * generators, "upper_bound": True}

    # ---- state ----------------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"language_model": self.language_model.get_config(), "minibatch_size": self.minibatch_size,
                "max_steps": self.max_steps, "every_n_batches": self.every_n_batches, "use_merge": self.use_merge,
                "max_merges": self.max_merges, "val_size": self.val_size, "seed": self.seed}

    def get_state(self) -> dict:
        return {**super().get_state(), "pool": self.pool, "merges": self.merges, "merge_due": self.merge_due,
                "tried_merges": self.tried_merges, "attempts": self.attempts,
                "best": self.best_index() if self.pool else None}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.pool = [{**c, "instructions": dict(c["instructions"]), "scores": list(c["scores"]),
                      "parents": list(c["parents"])} for c in state.get("pool", [])]
        self.merges = state.get("merges", 0)
        self.merge_due = state.get("merge_due", False)
        self.tried_merges = [list(t) for t in state.get("tried_merges", [])]
        self.attempts = [dict(a) for a in state.get("attempts", [])]
