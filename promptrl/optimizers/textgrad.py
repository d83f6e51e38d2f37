"""TextGrad-style textual gradients (Yuksekgonul et al., arXiv 2406.07496).

Loss: the optimizer LM critiques each poorly rewarded prediction against its target - the
textual gradient of the generator that produced the program's output. Backward: the critique
passes up the graph; each upstream generator gets feedback on how its output affected the
downstream step. TGD step: each generator's instruction is rewritten from its aggregated
feedback; an update that lowers the reward on a validation minibatch is reverted.
"""

from __future__ import annotations


from promptrl.data_model import DataModel, Field
from promptrl.checks import check_number
from promptrl.errors import UserError
from promptrl.modules import Generator
from promptrl.optimizers.base import Optimizer, as_json
from promptrl.seeding import derive_seed
from promptrl.engine.scheduler import run_all


class Critique(DataModel):
    critique: str = Field(description="Concise feedback: what is wrong and how to fix it")


class RewrittenInstruction(DataModel):
    instruction: str = Field(description="The improved instruction")


class TextGrad(Optimizer):
    """Textual gradient descent. `batch`: poorly rewarded predictions critiqued per step; `reward_threshold`: below it a
    prediction counts as poorly rewarded; `val_batch_size`: validation examples an update is
    checked on; `every_n_batches`: a step after every n training batches."""

    def __init__(self, language_model, batch: int = 3, reward_threshold: float = 1.0, val_batch_size: int = 8,
                 every_n_batches: int = 1, seed: int | None = 0):
        super().__init__(seed)
        if language_model is None:
            raise UserError("TextGrad needs an optimizer language_model")
        for key, value in (("batch", batch), ("val_batch_size", val_batch_size), ("every_n_batches", every_n_batches)):
            check_number("TextGrad", key, value, 1, integer=True)
        check_number("TextGrad", "reward_threshold", reward_threshold)
        self.language_model = language_model
        self.batch = batch
        self.reward_threshold = reward_threshold
        self.val_batch_size = val_batch_size
        self.every_n_batches = every_n_batches
        self.updates: list[dict] = []  # every TGD step: old/new instruction, rewards, accepted

    def _seed(self, *parts) -> int | None:
        return derive_seed(self.seed, "textgrad", self.step, *parts)

    # ---- loss and backward -------------------------------------------------------------------
    async def loss(self, generator, step: dict, prediction) -> str | None:
        output = as_json(step["output"])
        prompt = (f'A language model step "{generator.name}" follows this instruction:\n'
                  f"{generator.instructions or generator.default_instructions()}\n\n"
                  f"input: {as_json(step['input'])}\noutput: {output}\n"
                  f"expected output: {as_json(prediction.y_true.model_dump())}\n"
                  f"reward: {prediction.reward:.2f} (1 is best)\n"
                  + (f"the reward's feedback: {prediction.feedback}\n" if prediction.feedback else "") + "\n"
                  "Explain concisely what is wrong with the output and how the instruction should change to fix it.")
        answer = await self.ask(self.language_model, [{"role": "user", "content": prompt}], Critique,
                                self._seed("loss", prediction.index, generator.name))
        return answer.critique.strip() if answer else None

    async def backward(self, upstream, up_step: dict, downstream, feedback: str, index: int) -> str | None:
        prompt = (f'A language model step "{upstream.name}" (instruction: '
                  f"{upstream.instructions or upstream.default_instructions()})\n"
                  f"got input {as_json(up_step['input'])} and produced {as_json(up_step['output'])}.\n"
                  f'That output was an input of the step "{downstream.name}", whose result received this '
                  f"feedback:\n{feedback}\n\n"
                  f'Explain concisely how "{upstream.name}" should change its output to help "{downstream.name}" '
                  "do better.")
        answer = await self.ask(self.language_model, [{"role": "user", "content": prompt}], Critique,
                                self._seed("backward", index, upstream.name))
        return answer.critique.strip() if answer else None

    async def gradients(self, program, prediction) -> dict[str, list[str]]:
        """Feedback per generator for one prediction: loss at the outputs, then backwards."""
        steps = {s["module"]: s for s in prediction.trace}
        feedback: dict[str, list[str]] = {}
        for node in program.outputs:
            if isinstance(node.module, Generator) and node.module.name in steps:
                critique = await self.loss(node.module, steps[node.module.name], prediction)
                if critique:
                    feedback.setdefault(node.module.name, []).append(critique)
        for node in reversed(program.nodes):  # children before parents
            module = node.module
            if module is None or module.name not in feedback:
                continue
            joined = "\n".join(feedback[module.name])
            for parent in node.parents:
                if isinstance(parent.module, Generator) and parent.module.name in steps:
                    critique = await self.backward(parent.module, steps[parent.module.name], module, joined,
                                                   prediction.index)
                    if critique:
                        feedback.setdefault(parent.module.name, []).append(critique)
        return feedback

    # ---- the TGD step -----------------------------------------------------------------------
    async def rewrite(self, generator, feedback: list[str]) -> str | None:
        bullet_list = "\n".join(f"- {f}" for f in feedback)
        prompt = (f'Current instruction of the language model step "{generator.name}":\n'
                  f"{generator.instructions or generator.default_instructions()}\n\n"
                  f"Feedback collected on its recent mistakes:\n{bullet_list}\n\n"
                  "Rewrite the instruction so the step avoids these mistakes. Keep it short and general.")
        answer = await self.ask(self.language_model, [{"role": "user", "content": prompt}], RewrittenInstruction,
                                self._seed("rewrite", generator.name))
        return answer.instruction.strip() if answer else None

    async def apply_update(self, program, generator, new_instruction: str) -> bool:
        """Keep the new instruction unless it lowers the reward on a validation minibatch."""
        old_instruction = generator.instructions
        batch = self.minibatch(self.val_batch_size)
        old_reward = new_reward = None
        if batch is not None:
            old_reward = await self.score_instructions(program, generator, old_instruction, batch)
            new_reward = await self.score_instructions(program, generator, new_instruction, batch)
        accepted = batch is None or new_reward >= old_reward
        generator.instructions = new_instruction if accepted else old_instruction
        self.updates.append({"step": self.step, "module": generator.name, "old": old_instruction,
                             "new": new_instruction, "old_reward": old_reward, "new_reward": new_reward,
                             "accepted": accepted})
        return accepted

    def planned_calls(self, batches: int, generators: int, val_size: int, batch_size: int, epochs: int = 1) -> dict:
        """At most, per step: a critique per generator of each of `batch` poorly rewarded predictions,
        a rewrite per generator, and its check on a validation minibatch (old and new instruction).
        Fewer when fewer predictions are poor."""
        steps = batches // self.every_n_batches
        minibatch = min(self.val_batch_size, val_size)
        return {"teacher": steps * (min(self.batch, batch_size) * generators + generators),
                "scoring": steps * generators * 2 * minibatch * generators, "upper_bound": True}

    async def on_batch_end(self, program, predictions) -> None:
        if not self.count_batch(self.every_n_batches):
            return
        # A failed prediction has no output to critique: only scored outputs below the threshold.
        poor = [p for p in predictions if p.y_pred is not None and p.reward < self.reward_threshold][: self.batch]
        if not poor:
            return
        self.step += 1
        feedback: dict[str, list[str]] = {}
        for gradients in await run_all(self.gradients(program, p) for p in poor):
            for module, critiques in gradients.items():
                feedback.setdefault(module, []).extend(critiques)
        for generator in program.generators:
            if feedback.get(generator.name):
                new_instruction = await self.rewrite(generator, feedback[generator.name])
                if new_instruction and new_instruction != generator.instructions:
                    await self.apply_update(program, generator, new_instruction)

    def get_config(self) -> dict:
        return {"language_model": self.language_model.get_config(), "batch": self.batch,
                "reward_threshold": self.reward_threshold, "val_batch_size": self.val_batch_size,
                "every_n_batches": self.every_n_batches, "seed": self.seed}

    def get_state(self) -> dict:
        return {**super().get_state(), "updates": self.updates}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.updates = list(state.get("updates", []))


TGD = TextGrad  # TextGrad's name for the optimizer (Textual Gradient Descent)
