"""MIPRO-style search (Opsahl-Ong et al., "Optimizing Instructions and Demonstrations for Multi-Stage
Language Model Programs", arXiv 2406.11695): propose, then search the combinations.

1. Demonstrations: `nb_demo_sets` sets per generator - the current examples, then sets sampled from
   rewarded training predictions topped up with labelled examples (optimizers.demos), so a task the
   model gets 0 % right still has demonstrations to try.
2. Instructions: the optimizer LM writes a summary of the training data once, then proposes
   `nb_instructions - 1` instructions per generator, each grounded in that summary, the program's
   description, the step's fields, a sample demonstration set and a tip, beside the current one.
3. Search: Optuna's TPE sampler picks an (instruction, demonstration set) per generator; each trial
   is scored on a validation minibatch. The `nb_full` combinations with the best mean minibatch score
   and the current prompts are scored on the whole validation split; the best is kept - never one
   that scores below the current prompts there.

The search runs when the training data has been seen once (end of each epoch), inside the last
batch's hook, so the prompts fit() validates and checkpoints are the ones the search chose.
Trials and proposals are JSON state: a resumed run rebuilds the Optuna study from them.
"""

from __future__ import annotations

import json
import logging

from promptrl.checks import check_number
from promptrl.data_model import DataModel, Field
from promptrl.engine.scheduler import run_all
from promptrl.errors import UserError
from promptrl.optimizers.base import Optimizer, as_json, describe_fields, mean
from promptrl.optimizers.demos import check_demos
from promptrl.optimizers.random_few_shot import RandomFewShot
from promptrl.seeding import derive_seed

# Proposal tips, as in MIPRO: varied framings make the instruction candidates differ.
TIPS = (
    "Keep the instruction short and direct.",
    "Spell out the exact answer format the task expects.",
    "Describe the reasoning the task needs before the answer.",
    "Write it as the brief of an expert in this task's domain.",
    "Name the most common mistake on this task and how to avoid it.",
    "Be creative: a different angle from the current instruction.",
)


class DatasetSummary(DataModel):
    summary: str = Field(description="A few sentences on what the task is and what a correct answer looks like")


class ProposedInstruction(DataModel):
    instruction: str = Field(description="The new instruction for the step")


class MIPRO(Optimizer):
    """Joint search over instructions x demonstration sets.

    - `language_model`: the optimizer ("teacher") LM proposing instructions.
    - `nb_instructions`: instruction candidates per generator, the current one included.
    - `nb_demo_sets`: demonstration sets per generator, the current examples included.
    - `k`, `k_best`, `min_reward`, `demos`: how a demonstration set is drawn (as RandomFewShot).
    - `nb_trials`: combinations tried per search, each on a validation minibatch.
    - `minibatch_size`: validation examples per trial.
    - `nb_full`: best combinations re-scored on the whole validation split.
    """

    def __init__(self, language_model, nb_instructions: int = 4, nb_demo_sets: int = 4, k: int = 3,
                 k_best: int = 10, min_reward: float = 0.0, demos: str = "mixed", nb_trials: int = 10,
                 minibatch_size: int = 8, nb_full: int = 2, seed: int | None = 0):
        super().__init__(seed)
        if language_model is None:
            raise UserError("MIPRO needs an optimizer language_model")
        for key, value, minimum in (("nb_instructions", nb_instructions, 1), ("nb_demo_sets", nb_demo_sets, 1),
                                    ("nb_trials", nb_trials, 0), ("minibatch_size", minibatch_size, 1),
                                    ("nb_full", nb_full, 1)):
            check_number("MIPRO", key, value, minimum, integer=True)
        check_demos("MIPRO", demos)
        self.language_model = language_model
        self.nb_instructions = nb_instructions
        self.nb_demo_sets = nb_demo_sets
        self.nb_trials = nb_trials
        self.minibatch_size = minibatch_size
        self.nb_full = nb_full
        self.few_shot = RandomFewShot(k=k, k_best=k_best, min_reward=min_reward, demos=demos, seed=seed)
        self.train_size = 0
        self.seen = 0  # training predictions seen: a search is due each time it passes a multiple of train_size
        self.summary: str | None = None
        # generator name -> {"instructions": [str], "demo_sets": [[example]]}: index 0 is the starting prompt
        self.candidates: dict[str, dict] = {}
        self.trials: list[dict] = []  # every trial: {"params": {param: index}, "reward": float, "search": n}
        self.full_scores: dict[str, float] = {}  # combination key -> reward on the whole validation split
        self.chosen: dict | None = None  # the combination in use after the last search

    # ---- proposals -----------------------------------------------------------------------------
    async def summarize_data(self, train_data) -> str:
        x, y = train_data
        indices = self.rng.sample(range(len(x)), min(8, len(x)))
        lines = ["Here are examples of a task (input, then the expected output):", ""]
        for i in indices:
            lines += [f"input: {as_json(x[i].model_dump())}", f"output: {as_json(y[i].model_dump())}", ""]
        lines.append("Summarize the task: what the inputs are, what is asked and what a correct output looks like.")
        answer = await self.ask(self.language_model, [{"role": "user", "content": "\n".join(lines)}], DatasetSummary,
                                seed=derive_seed(self.seed, "mipro", "summary"))
        return answer.summary.strip() if answer else ""

    def proposal_prompt(self, program, generator, demo_set: list[dict], tip: str) -> list[dict]:
        lines = []
        if self.summary:
            lines += [f"The task: {self.summary}", ""]
        description = program.description or f'a program named "{program.name}"'
        lines += [f"The program: {description}, with steps {', '.join(g.name for g in program.generators)}.",
                  f'You write the instruction of its step "{generator.name}", which receives '
                  f"{describe_fields(generator.input_data_model)} and answers with "
                  f"{describe_fields(generator.output_data_model)}.",
                  f"Its current instruction: {generator.instructions or generator.default_instructions()}", ""]
        if demo_set:
            lines.append("Examples of the step (input, then a good output):")
            for demo in demo_set:
                lines += [f"input: {as_json(demo['input'])}", f"output: {as_json(demo['output'])}", ""]
        lines += [f"Tip: {tip}", "Write one new instruction for this step."]
        return [{"role": "system", "content": "You are an expert prompt engineer."},
                {"role": "user", "content": "\n".join(lines)}]

    async def propose(self, program) -> None:
        """Demonstration sets and instruction candidates for every generator (once per run)."""
        for generator in program.generators:
            sets = [list(generator.examples)]
            keys = {json.dumps(sets[0], sort_keys=True)}
            for _ in range(4 * self.nb_demo_sets):  # distinct sets only; few inputs may give fewer
                if len(sets) >= self.nb_demo_sets:
                    break
                drawn = self.few_shot.choose(generator.name)
                if drawn and json.dumps(drawn, sort_keys=True) not in keys:
                    keys.add(json.dumps(drawn, sort_keys=True))
                    sets.append(drawn)
            self.candidates[generator.name] = {
                "instructions": [generator.instructions or generator.default_instructions()], "demo_sets": sets}
        requests = []
        for generator in program.generators:
            entry = self.candidates[generator.name]
            for i in range(self.nb_instructions - 1):
                demo_set = entry["demo_sets"][(i + 1) % len(entry["demo_sets"])]
                tip = TIPS[self.rng.randrange(len(TIPS))]
                requests.append((generator.name, self.ask(
                    self.language_model, self.proposal_prompt(program, generator, demo_set, tip), ProposedInstruction,
                    seed=derive_seed(self.seed, "mipro", "propose", generator.name, i))))
        answers = await run_all(request for _, request in requests)
        for (name, _), answer in zip(requests, answers):
            instruction = answer.instruction.strip() if answer else ""
            if instruction and instruction not in self.candidates[name]["instructions"]:
                self.candidates[name]["instructions"].append(instruction)

    # ---- search --------------------------------------------------------------------------------
    def variables_of(self, params: dict) -> dict:
        return {name: {"instructions": entry["instructions"][params[f"{name}.instruction"]],
                       "examples": entry["demo_sets"][params[f"{name}.demos"]]}
                for name, entry in self.candidates.items()}

    def distributions(self) -> dict:
        from optuna.distributions import CategoricalDistribution

        dists = {}
        for name, entry in self.candidates.items():
            dists[f"{name}.instruction"] = CategoricalDistribution(list(range(len(entry["instructions"]))))
            dists[f"{name}.demos"] = CategoricalDistribution(list(range(len(entry["demo_sets"]))))
        return dists

    def study(self):
        """A TPE study holding every past trial (seeded by the search count, so a resumed run
        proposes what the uninterrupted run would have)."""
        import optuna

        optuna.logging.set_verbosity(logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=derive_seed(self.seed, "mipro", "tpe", len(self.trials)),
                                             n_startup_trials=min(4, max(1, self.nb_trials // 2)))
        study = optuna.create_study(direction="maximize", sampler=sampler)
        dists = self.distributions()
        for trial in self.trials:
            if set(trial["params"]) == set(dists):
                study.add_trial(optuna.trial.create_trial(params=trial["params"], distributions=dists,
                                                          value=trial["reward"]))
        return study

    @staticmethod
    def key(params: dict) -> str:
        return json.dumps(params, sort_keys=True)

    async def search(self, program) -> None:
        search_number = self.step
        study = self.study()
        current = {**{f"{n}.instruction": 0 for n in self.candidates}, **{f"{n}.demos": 0 for n in self.candidates}}
        if self.chosen is not None:
            current = dict(self.chosen)
        if not any(self.key(t["params"]) == self.key(current) for t in self.trials):
            study.enqueue_trial(current)  # the starting prompts are a trial like any other
        dists = self.distributions()
        for _ in range(self.nb_trials):
            trial = study.ask(dists)
            batch = self.minibatch(self.minibatch_size)
            logs, _ = await self.evaluate_candidate(program, self.variables_of(trial.params), batch)
            study.tell(trial, logs["reward"])
            self.trials.append({"params": dict(trial.params), "reward": logs["reward"], "search": search_number})
        await self.select(program, current)

    async def select(self, program, current: dict) -> None:
        """Score the current prompts and the best combinations on the whole validation split; keep the best."""
        by_key: dict[str, list[float]] = {}
        params_of: dict[str, dict] = {}
        for trial in self.trials:
            by_key.setdefault(self.key(trial["params"]), []).append(trial["reward"])
            params_of[self.key(trial["params"])] = trial["params"]
        challengers = sorted((k for k in by_key if k != self.key(current)), key=lambda k: mean(by_key[k]), reverse=True)
        finalists = [self.key(current), *challengers[: self.nb_full]]
        params_of[self.key(current)] = current
        val = self.validation_data  # scored as fit validates: the current prompts replay fit's calls
        for key in finalists:
            if key not in self.full_scores:
                logs, _ = await self.evaluate_candidate(program, self.variables_of(params_of[key]), val,
                                                        seed=self.validation_seed)
                self.full_scores[key] = logs["reward"]
        best = max(finalists, key=lambda k: (self.full_scores[k], k == self.key(current)))  # ties keep current
        self.chosen = params_of[best]
        program.set_trainable_variables(self.variables_of(self.chosen))

    # ---- fit hooks -----------------------------------------------------------------------------
    async def on_train_begin(self, program, train_data, validation_data) -> None:
        await super().on_train_begin(program, train_data, validation_data)
        self.train_size = len(train_data[0])
        self.seen = 0  # fit starts at an epoch boundary (a resumed run too): searches follow its epochs
        if not validation_data or not len(validation_data[0]):
            raise UserError("MIPRO scores its combinations on validation data: pass validation_data (CLI: set dataset.val_size > 0)")
        if self.summary is None:
            self.summary = await self.summarize_data(train_data)

    async def on_batch_end(self, program, predictions) -> None:
        self.batches_seen += 1
        self.few_shot.record(predictions, program)
        before, self.seen = self.seen, self.seen + len(predictions)
        if self.train_size and self.seen // self.train_size > before // self.train_size:  # an epoch's last batch
            self.step += 1
            if not self.candidates:
                await self.propose(program)
            await self.search(program)

    def planned_calls(self, batches: int, generators: int, val_size: int, batch_size: int, epochs: int = 1) -> dict:
        """Per run: a data summary and nb_instructions - 1 proposals per generator. Per epoch: nb_trials
        program runs on a minibatch and up to nb_full + 1 runs on the whole validation split. An upper
        bound: a combination already scored on the whole split is not scored again."""
        minibatch = min(self.minibatch_size, val_size)
        return {"teacher": 1 + generators * (self.nb_instructions - 1),
                "scoring": epochs * (self.nb_trials * minibatch + (self.nb_full + 1) * val_size) * generators,
                "upper_bound": True}

    def get_config(self) -> dict:
        few_shot = self.few_shot.get_config()
        return {"language_model": self.language_model.get_config(), "nb_instructions": self.nb_instructions,
                "nb_demo_sets": self.nb_demo_sets, "k": few_shot["k"], "k_best": few_shot["k_best"],
                "min_reward": few_shot["min_reward"], "demos": few_shot["demos"], "nb_trials": self.nb_trials,
                "minibatch_size": self.minibatch_size, "nb_full": self.nb_full, "seed": self.seed}

    def get_state(self) -> dict:
        return {**super().get_state(), "few_shot": self.few_shot.get_state(), "seen": self.seen,
                "summary": self.summary, "candidates": self.candidates, "trials": self.trials,
                "full_scores": self.full_scores, "chosen": self.chosen}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.few_shot.set_state(state.get("few_shot", {}))
        self.seen = state.get("seen", 0)
        self.summary = state.get("summary")
        self.candidates = {k: dict(v) for k, v in state.get("candidates", {}).items()}
        self.trials = [dict(t) for t in state.get("trials", [])]
        self.full_scores = dict(state.get("full_scores", {}))
        self.chosen = state.get("chosen")
