"""OPRO (Yang et al., "Large Language Models as Optimizers", arXiv 2309.03409) and FewShotOPRO.

Each step, for each generator: a meta-prompt shows the optimizer LM the best past instructions
with their rewards (sorted, best last, as in the paper) and a few scored predictions; the LM
proposes `nb_candidates` new instructions; the current instruction and each candidate are scored
on the same validation minibatch, and the generator keeps the best - a candidate that does not
beat the current instruction is not kept. An instruction's score in the meta-prompt is the mean of
every score it got, so one lucky minibatch does not make it look best forever.
"""

from __future__ import annotations


from promptrl.data_model import DataModel, Field
from promptrl.checks import check_number
from promptrl.errors import UserError
from promptrl.optimizers.base import Optimizer, as_json, describe_fields, mean
from promptrl.optimizers.random_few_shot import RandomFewShot
from promptrl.seeding import derive_seed
from promptrl.engine.scheduler import run_all


class ProposedInstruction(DataModel):
    instruction: str = Field(description="The new instruction for the step")


class OPRO(Optimizer):
    """Instruction optimization from scored history.

    - `language_model`: the optimizer ("teacher") LM writing instructions.
    - `nb_candidates`: instructions proposed per step and generator.
    - `max_history`: best past instructions shown in the meta-prompt.
    - `nb_examples`: scored predictions shown in the meta-prompt.
    - `val_batch_size`: validation examples each candidate is scored on.
    - `every_n_batches`: run a step after every n training batches.
    """

    def __init__(self, language_model, nb_candidates: int = 2, max_history: int = 8, nb_examples: int = 3,
                 val_batch_size: int = 16, every_n_batches: int = 1, seed: int | None = 0):
        super().__init__(seed)
        if language_model is None:
            raise UserError("OPRO needs an optimizer language_model")
        for key, value, minimum in (("nb_candidates", nb_candidates, 1), ("max_history", max_history, 1),
                                    ("nb_examples", nb_examples, 0), ("val_batch_size", val_batch_size, 1),
                                    ("every_n_batches", every_n_batches, 1)):
            check_number(type(self).__name__, key, value, minimum, integer=True)
        self.language_model = language_model
        self.nb_candidates = nb_candidates
        self.max_history = max_history
        self.nb_examples = nb_examples
        self.val_batch_size = val_batch_size
        self.every_n_batches = every_n_batches
        # generator name -> [{"instruction", "reward", "step"}]: every instruction scored so far
        self.history: dict[str, list[dict]] = {}

    # ---- the meta-prompt -------------------------------------------------------------------
    def best_history(self, module_name: str) -> list[dict]:
        """Up to `max_history` best distinct instructions with their mean score, ascending (best last)."""
        scores: dict[str, list[float]] = {}
        for entry in self.history.get(module_name, []):
            scores.setdefault(entry["instruction"], []).append(entry["reward"])
        means = [{"instruction": i, "reward": mean(r), "scored": len(r)} for i, r in scores.items()]
        top = sorted(means, key=lambda e: e["reward"], reverse=True)[: self.max_history]
        return sorted(top, key=lambda e: e["reward"])

    def meta_prompt(self, generator, predictions) -> list[dict]:
        lines = [
            f'You improve the instruction of a language model step named "{generator.name}".',
            f"The step receives {describe_fields(generator.input_data_model)} "
            f"and must answer with {describe_fields(generator.output_data_model)}.",
            "",
            "Previous instructions and their scores (higher is better), from worst to best:",
        ]
        for entry in self.best_history(generator.name):
            lines += [f"instruction: {entry['instruction']}", f"score: {entry['reward']:.2f}", ""]
        shown = [p for p in predictions if any(s["module"] == generator.name for s in p.trace)][: self.nb_examples]
        if shown:
            lines.append("Examples of the step at work, with the program's expected output and reward:")
            for p in shown:
                step = next(s for s in p.trace if s["module"] == generator.name)
                lines += [f"input: {as_json(step['input'])}", f"output: {as_json(step['output'])}",
                          f"expected program output: {as_json(p.y_true.model_dump())}",
                          f"reward: {p.reward:.2f}" + (f" ({p.feedback})" if p.feedback else ""), ""]
        lines.append("Write a new instruction, different from the previous ones, that gets a higher score. "
                     "Keep it short and general.")
        return [{"role": "system", "content": "You are an expert prompt engineer."},
                {"role": "user", "content": "\n".join(lines)}]

    # ---- the step ----------------------------------------------------------------------------
    def current_instruction(self, generator) -> str:
        return generator.instructions or generator.default_instructions()

    def record(self, generator, instruction: str, reward: float) -> None:
        self.history.setdefault(generator.name, []).append(
            {"instruction": instruction, "reward": reward, "step": self.step})

    async def optimize_generator(self, program, generator, predictions) -> None:
        batch = self.minibatch(self.val_batch_size)
        if batch is None:
            return
        current = self.current_instruction(generator)
        best_instruction, best_reward = current, await self.score_instructions(program, generator, current, batch)
        self.record(generator, current, best_reward)
        messages = self.meta_prompt(generator, predictions)
        proposals = await run_all((  # concurrent, bounded by the teacher's window
            self.ask(self.language_model, messages, ProposedInstruction,
                     seed=derive_seed(self.seed, "opro", self.step, generator.name, i))
            for i in range(self.nb_candidates)))
        seen = {e["instruction"] for e in self.history.get(generator.name, [])}
        for proposal in proposals:
            candidate = proposal.instruction.strip() if proposal else ""
            if not candidate or candidate in seen:  # an instruction already scored is not paid for again
                continue
            seen.add(candidate)
            reward = await self.score_instructions(program, generator, candidate, batch)
            self.record(generator, candidate, reward)
            if reward > best_reward:  # strictly better on the same minibatch, or not kept
                best_instruction, best_reward = candidate, reward
        if best_instruction != current:
            generator.instructions = best_instruction

    def planned_calls(self, batches: int, generators: int, val_size: int, batch_size: int, epochs: int = 1) -> dict:
        """Per step and generator: the current instruction and each candidate scored on one validation
        minibatch (a program run calls every generator), and nb_candidates proposals. An upper bound:
        a proposal that fails or repeats an instruction is not scored."""
        steps = batches // self.every_n_batches * generators if val_size else 0
        minibatch = min(self.val_batch_size, val_size)
        return {"teacher": steps * self.nb_candidates,
                "scoring": steps * (1 + self.nb_candidates) * minibatch * generators, "upper_bound": True}

    async def on_batch_end(self, program, predictions) -> None:
        if not self.count_batch(self.every_n_batches):
            return
        self.step += 1
        scored = sorted(predictions, key=lambda p: p.reward or 0.0)  # worst first: most to learn from
        for generator in program.generators:
            await self.optimize_generator(program, generator, scored)

    def get_config(self) -> dict:
        return {"language_model": self.language_model.get_config(), "nb_candidates": self.nb_candidates,
                "max_history": self.max_history, "nb_examples": self.nb_examples,
                "val_batch_size": self.val_batch_size, "every_n_batches": self.every_n_batches, "seed": self.seed}

    def get_state(self) -> dict:
        return {**super().get_state(), "history": self.history}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.history = {k: list(v) for k, v in state.get("history", {}).items()}


class FewShotOPRO(OPRO):
    """OPRO's instruction updates plus RandomFewShot's demonstrations (k among the k_best rewarded
    predictions, topped up from labels with `demos=mixed`)."""

    def __init__(self, language_model, k: int = 3, k_best: int = 10, min_reward: float = 0.0, demos: str = "mixed",
                 **opro_kwargs):
        super().__init__(language_model, **opro_kwargs)
        self.few_shot = RandomFewShot(k=k, k_best=k_best, min_reward=min_reward, demos=demos, seed=self.seed)

    async def on_batch_end(self, program, predictions) -> None:
        await self.few_shot.on_batch_end(program, predictions)
        await super().on_batch_end(program, predictions)

    def get_config(self) -> dict:
        config = self.few_shot.get_config()
        return {**super().get_config(), "k": config["k"], "k_best": config["k_best"],
                "min_reward": config["min_reward"], "demos": config["demos"]}

    def get_state(self) -> dict:
        return {**super().get_state(), "few_shot": self.few_shot.get_state()}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.few_shot.set_state(state.get("few_shot", {}))
