"""Modules: the nodes of a program graph.

Calling a module on a symbolic node (from `Input`) builds the graph; `await` on the result
is allowed, as in Synalinks (`x1 = await Generator(...)(x0)`). Running a program calls each
module's `call(inputs, ctx)` with plain dicts.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import pydantic

from promptrl.data_model import DataModel, resolve_data_model
from promptrl.language_model import LanguageModel, schema_of
from promptrl.seeding import derive_seed

_names = itertools.count()


def _unique_name(prefix: str) -> str:
    return f"{prefix}_{next(_names)}"


def merge_data_models(models: list[type[pydantic.BaseModel]], name: str) -> type[pydantic.BaseModel]:
    """One data model with the fields of several (a module fed by several others)."""
    if len(models) == 1:
        return models[0]
    definitions = {}
    for model in models:
        for field_name, info in model.model_fields.items():
            definitions[field_name] = (info.annotation, info)  # last parent wins, as in Program.run
    return pydantic.create_model(name, __base__=DataModel, **definitions)


@dataclass
class RunContext:
    """Per-example state threaded through a program run."""

    seed: int | None = None
    index: int = 0
    trace: list[dict] | None = field(default=None)

    def call_seed(self, module_name: str) -> int | None:
        """A seed for one LM call, stable whatever order calls complete in."""
        return derive_seed(self.seed, self.index, module_name)


class SymbolicNode:
    """A symbolic value in a program graph: produced by `Input` or by a module call."""

    def __init__(self, data_model, module: Module | None = None, parents: tuple = (), name: str | None = None):
        self.data_model = data_model
        self.module = module
        self.parents = parents
        self.name = name or (module.name if module else _unique_name("input"))

    def __await__(self):
        # Lets users write `x1 = await Generator(...)(x0)` as in Synalinks.
        if False:  # pragma: no cover - makes this a generator function
            yield
        return self

    def __repr__(self) -> str:
        return f"SymbolicNode({self.name}: {self.data_model.__name__})"


def Input(data_model, name: str | None = None) -> SymbolicNode:  # noqa: N802 - Keras/Synalinks name
    """The entry point of a program graph."""
    return SymbolicNode(resolve_data_model(data_model, name or "Input"), name=name)


class Module:
    """Base of every module. Subclasses set `output_data_model` when called and implement `call`."""

    def __init__(self, name: str | None = None):
        self.name = name or _unique_name(type(self).__name__.lower())
        self.input_data_model: type[pydantic.BaseModel] | None = None

    def __call__(self, inputs):
        nodes = tuple(inputs) if isinstance(inputs, (list, tuple)) else (inputs,)
        if not all(isinstance(node, SymbolicNode) for node in nodes):
            raise TypeError(f"{self.name}: call a module on Input/module outputs; run data through a Program")
        self.input_data_model = merge_data_models([n.data_model for n in nodes], f"{self.name}_inputs")
        self.build(self.input_data_model)
        return SymbolicNode(self.output_data_model, module=self, parents=nodes)

    def build(self, input_data_model) -> None:
        pass

    @property
    def output_data_model(self) -> type[pydantic.BaseModel]:
        raise NotImplementedError

    async def call(self, inputs: dict, ctx: RunContext) -> pydantic.BaseModel:
        raise NotImplementedError

    # Trainable state (prompts). Modules without prompts have none.
    def get_variables(self) -> dict | None:
        return None

    def set_variables(self, variables: dict) -> None:
        pass

    def get_config(self) -> dict:
        return {"name": self.name}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class Generator(Module):
    """Asks a language model for `data_model` given its inputs.

    Trainable state: `instructions` (str) and `examples` (list of {"input": dict, "output": dict}).
    """

    def __init__(
        self,
        data_model,
        language_model: LanguageModel,
        instructions: str | None = None,
        examples: list[dict] | None = None,
        name: str | None = None,
    ):
        super().__init__(name)
        self._prefix = None
        self.data_model = resolve_data_model(data_model, "Output")
        self.language_model = language_model
        self.instructions = instructions
        self.initial_instructions = instructions
        self.examples = examples

    @property
    def output_data_model(self):
        return self.data_model

    def default_instructions(self) -> str:
        inputs = ", ".join(f"`{f}`" for f in (self.input_data_model.model_fields if self.input_data_model else []))
        outputs = ", ".join(f"`{f}`" for f in self.output_data_model.model_fields)
        return f"Given the input fields {inputs}, produce the output fields {outputs}."

    # The trainable prompts. Assigning either (optimizers, set_variables) invalidates the rendered prefix.
    @property
    def instructions(self) -> str | None:
        return self._instructions

    @instructions.setter
    def instructions(self, value: str | None) -> None:
        self._instructions = value
        self._prefix = None

    @property
    def examples(self) -> list[dict]:
        return self._examples

    @examples.setter
    def examples(self, value) -> None:
        self._examples = list(value or [])
        self._prefix = None

    def _prompt_prefix(self) -> list[dict]:
        """System prompt and demonstration turns: rendered when the prompts change, not per example."""
        key = (self._instructions, len(self._examples), id(self.input_data_model))
        if self._prefix is None or self._prefix[0] != key:
            schema = json.dumps(schema_of(self.output_data_model), separators=(",", ":"))
            system = (
                f"{self._instructions or self.default_instructions()}\n\n"
                f"Answer with a JSON object that follows this JSON schema:\n{schema}"
            )
            messages = [{"role": "system", "content": system}]
            for example in self._examples:
                messages.append({"role": "user", "content": _json(example["input"])})
                messages.append({"role": "assistant", "content": _json(example["output"])})
            self._prefix = (key, messages)
        return self._prefix[1]

    def render_messages(self, inputs: dict) -> list[dict]:
        """The exact chat messages sent for `inputs` (few-shot examples as previous turns)."""
        return [*self._prompt_prefix(), {"role": "user", "content": _json(inputs)}]

    async def call(self, inputs: dict, ctx: RunContext) -> pydantic.BaseModel:
        messages = self.render_messages(inputs)
        output = await self.language_model.generate(messages, self.output_data_model, seed=ctx.call_seed(self.name))
        if ctx.trace is not None:
            ctx.trace.append({"module": self.name, "input": inputs, "output": output.model_dump()})
        return output

    def get_variables(self) -> dict:
        return {"instructions": self.instructions, "examples": [dict(e) for e in self.examples]}

    def set_variables(self, variables: dict) -> None:
        self.instructions = variables.get("instructions", self.instructions)
        self.examples = [dict(e) for e in variables.get("examples", self.examples)]

    def get_config(self) -> dict:
        return {"name": self.name, "initial_instructions": self.initial_instructions}


class ChainOfThought(Generator):
    """A Generator whose output starts with a `thinking` field, so the LM reasons before answering."""

    @property
    def output_data_model(self):
        if getattr(self, "_cot_model", None) is None:
            base = self.data_model
            definitions = {"thinking": (str, pydantic.Field(description="Your step by step thinking"))}
            definitions.update({name: (info.annotation, info) for name, info in base.model_fields.items()})
            self._cot_model = pydantic.create_model(f"{base.__name__}WithThinking", __base__=DataModel, **definitions)
        return self._cot_model


# The library's own modules, by the short names checkpoints use.
from promptrl.registry import register_module  # noqa: E402 - registry needs Module defined

for _cls in (Generator, ChainOfThought):
    register_module(_cls, name=_cls.__name__)
