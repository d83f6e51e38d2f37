"""Program: a functional graph of modules, with save/load as JSON and the Keras-like training API."""

from __future__ import annotations

import functools
import json
from typing import Any

import pydantic

from promptrl.data_model import data_model_from_spec, data_model_to_spec, import_path
from promptrl.errors import UserError, one_line
from promptrl.io import atomic_write_json
from promptrl.language_model import LanguageModel
from promptrl.modules import Generator, Input, Module, RunContext, SymbolicNode, merge_data_models
from promptrl.registry import lookup_data_model, lookup_module, module_kind
from promptrl.engine.scheduler import run_all

FORMAT = "promptrl.program/1"
RESERVED_LOG_KEYS = ("reward", "failures", "infra_failures")


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


@functools.lru_cache(maxsize=1024)
def field_names(data_model: type[pydantic.BaseModel]) -> tuple[str, ...]:
    """A data model's field names, read once per class (pydantic's `model_fields` is not free)."""
    return tuple(data_model.model_fields)


class Program:
    """`Program(inputs, outputs, name, description)`: the graph between `inputs` and `outputs`."""

    def __init__(self, inputs, outputs, name: str = "program", description: str | None = None):
        self.inputs = _as_tuple(inputs)
        self.outputs = _as_tuple(outputs)
        self.name = name
        self.description = description
        self.nodes = self._topological_order()
        names = [n.name for n in self.nodes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UserError(f"program '{name}': module/input names {duplicates} are used twice; give unique name=")
        missing = [n for n in self.nodes if n.module is None and n not in self.inputs]
        if missing:
            raise UserError(f"program '{name}': input {missing[0].name} is used but not listed in inputs")
        self.output_data_model = merge_data_models([n.data_model for n in self.outputs], f"{name}_outputs")
        self.reward = None
        self.optimizer = None
        self.metrics: list = []
        self.metadata: dict = {}  # saved with the program: e.g. the dataset and seed it was trained on
        self.saved_optimizer_state: dict | None = None  # set by load(): what an optimizer resumes from

    def _topological_order(self) -> list[SymbolicNode]:
        order, seen = [], set()

        def visit(node):
            if id(node) in seen:
                return
            seen.add(id(node))
            for parent in node.parents:
                visit(parent)
            order.append(node)

        for out in self.outputs:
            visit(out)
        return order

    @property
    def modules(self) -> list[Module]:
        return [n.module for n in self.nodes if n.module is not None]

    @property
    def generators(self) -> list[Generator]:
        return [m for m in self.modules if isinstance(m, Generator)]

    @property
    def language_models(self) -> list[LanguageModel]:
        unique = {}
        for g in self.generators:
            unique.setdefault(id(g.language_model), g.language_model)
        return list(unique.values())

    def get_module(self, name: str) -> Module:
        for module in self.modules:
            if module.name == name:
                return module
        raise KeyError(name)

    # ---- trainable state -------------------------------------------------------------
    @property
    def trainable_variables(self) -> dict[str, dict]:
        """{module name: {"instructions": ..., "examples": [...]}} for every module with prompts."""
        return {m.name: m.get_variables() for m in self.modules if m.get_variables() is not None}

    def set_trainable_variables(self, variables: dict[str, dict]) -> None:
        for name, value in variables.items():
            self.get_module(name).set_variables(value)

    # ---- running -----------------------------------------------------------------------
    async def run(self, x, ctx: RunContext | None = None) -> pydantic.BaseModel:
        """Run one example. Raises PredictionError if any module fails."""
        ctx = ctx or RunContext()
        # id(node) -> an input's dict or a module's validated output (dumped only where it is read)
        values: dict[int, dict | pydantic.BaseModel] = {}
        data = x.model_dump() if isinstance(x, pydantic.BaseModel) else dict(x)
        for node in self.inputs:
            names = field_names(node.data_model)
            missing = [k for k in names if k not in data]
            if missing:
                raise UserError(f"program '{self.name}': input is missing field '{missing[0]}' of "
                                f"{node.data_model.__name__} (got {sorted(data)}); check the dataset's input fields")
            values[id(node)] = {k: data[k] for k in names}
        pending = [n for n in self.nodes if n.module is not None]
        while pending:
            # Every module whose parents are done runs now, concurrently.
            ready = [n for n in pending if all(id(p) in values for p in n.parents)]
            if len(ready) == 1:  # a chain: no task to create
                outputs = [await ready[0].module.call(self._merge(ready[0].parents, values), ctx)]
            else:
                outputs = await run_all(n.module.call(self._merge(n.parents, values), ctx) for n in ready)
            for node, output in zip(ready, outputs):
                values[id(node)] = output
            pending = [n for n in pending if id(n) not in values]
        if len(self.outputs) == 1:  # one module's output, validated when it was produced
            output = values[id(self.outputs[0])]
            if type(output) is self.output_data_model:
                return output
        return self.output_data_model.model_validate(self._merge(self.outputs, values))

    @staticmethod
    def _merge(nodes, values) -> dict:
        merged: dict[str, Any] = {}
        for node in nodes:
            value = values[id(node)]
            merged.update(value.model_dump() if isinstance(value, pydantic.BaseModel) else value)
        return merged

    async def __call__(self, x, seed: int | None = None):
        return await self.run(x, RunContext(seed=seed))

    # ---- training API (see trainer.py) -------------------------------------------------------
    def compile(self, reward=None, optimizer=None, metrics=None) -> None:
        names = [m.name for m in metrics or []]
        clash = sorted({n for n in names if names.count(n) > 1 or n in RESERVED_LOG_KEYS})
        if clash:
            raise UserError(f"metric name(s) {clash} clash with another metric or a log key "
                            f"({', '.join(RESERVED_LOG_KEYS)}); give each metric a unique name=")
        for scorer, key in ([(reward, "reward")] if reward else []) + [(m, f"metrics.{m.name}") for m in metrics or []]:
            self._check_mask(scorer, key)
        self.reward = reward
        self.optimizer = optimizer
        self.metrics = list(metrics or [])
        if optimizer is not None:
            optimizer.attach(self)

    def _check_mask(self, scorer, key: str) -> None:
        """A mask naming a field the program does not output would score nothing (silently 0 or 1)."""
        fields = self.output_data_model.model_fields
        unknown = [f for f in (scorer.in_mask or []) + (scorer.out_mask or []) if f not in fields]
        if unknown:
            raise UserError(f"{scorer.name}: mask field '{unknown[0]}' is not an output of program '{self.name}' "
                            f"(outputs: {', '.join(fields)}); fix in_mask/out_mask, e.g. {key}.in_mask=[{next(iter(fields))}]")

    async def fit(self, x, y, validation_data=None, epochs: int = 1, batch_size: int = 8, callbacks=None, seed=0,
                  validate_initial: bool = False):
        from promptrl.trainer import fit

        return await fit(self, x, y, validation_data, epochs, batch_size, callbacks, seed, validate_initial)

    async def evaluate(self, x, y, batch_size: int = 8, seed: int | None = None, callbacks=None) -> dict:
        from promptrl.trainer import evaluate

        return await evaluate(self, x, y, batch_size, seed, callbacks)

    async def predict(self, x, batch_size: int = 8, seed: int | None = None) -> list:
        from promptrl.trainer import predict

        return [r.y_pred for r in await predict(self, x, batch_size, seed)]

    # ---- inspection --------------------------------------------------------------------------
    def summary(self) -> str:
        lines = [f"Program: {self.name}" + (f" - {self.description}" if self.description else "")]
        for node in self.nodes:
            kind = type(node.module).__name__ if node.module else "Input"
            parents = ", ".join(p.name for p in node.parents) or "-"
            fields = ", ".join(node.data_model.model_fields)
            lines.append(f"  {node.name:<24} {kind:<15} <- {parents:<24} -> {fields}")
            if isinstance(node.module, Generator):
                g = node.module
                lines.append(f"  {'':<24} model={g.language_model.model} examples={len(g.examples)}")
        return "\n".join(lines)

    # ---- save / load ---------------------------------------------------------------------------
    def get_state(self) -> dict:
        lms, lm_names = {}, {}
        for lm in self.language_models:
            lm_names[id(lm)] = f"lm_{len(lms)}"
            lms[lm_names[id(lm)]] = lm.get_config()
        nodes = []
        for node in self.nodes:
            entry: dict[str, Any] = {"name": node.name}
            if node.module is None:
                entry.update(kind="Input", data_model=_data_model_ref(node.data_model))
            else:
                module = node.module
                entry.update(kind=module_kind(type(module)))
                entry["parents"] = [p.name for p in node.parents]
                entry["config"] = module.get_config()
                if isinstance(module, Generator):
                    entry["data_model"] = _data_model_ref(module.data_model)
                    entry["language_model"] = lm_names[id(module.language_model)]
                entry["variables"] = module.get_variables()
            nodes.append(entry)
        state = {
            "format": FORMAT,
            "name": self.name,
            "description": self.description,
            "language_models": lms,
            "nodes": nodes,
            "inputs": [n.name for n in self.inputs],
            "outputs": [n.name for n in self.outputs],
            "metadata": self.metadata,
        }
        if self.optimizer is not None:
            state["optimizer"] = {"class": type(self.optimizer).__name__, "state": self.optimizer.get_state()}
        return state

    def save(self, path) -> None:
        """Write the program (graph, prompts, optimizer state) as JSON, atomically."""
        atomic_write_json(path, self.get_state())

    @classmethod
    def load(cls, path, language_model: LanguageModel | None = None, *, endpoint: dict | None = None,
             trust_endpoint: bool = False) -> Program:
        """Rebuild a saved program. A checkpoint is data: its module kinds and data models are looked
        up in promptrl's registry (never imported), and it cannot choose where calls go.

        `language_model` replaces every saved one. Otherwise each saved model keeps its name and
        sampling settings, and takes its endpoint and credentials (api_base, api_key, headers, other
        transport arguments) from `endpoint` - the file's own only with `trust_endpoint=True`.
        """
        return cls.from_state(read_state(path), language_model, endpoint=endpoint, trust_endpoint=trust_endpoint)

    @classmethod
    def from_state(cls, state: dict, language_model: LanguageModel | None = None, *, endpoint: dict | None = None,
                   trust_endpoint: bool = False) -> Program:
        state = check_state(state)
        lms = {name: language_model or LanguageModel.from_saved(config, endpoint, trust_endpoint)
               for name, config in state["language_models"].items()}
        built: dict[str, SymbolicNode] = {}
        for entry in state["nodes"]:
            node = entry["name"]
            try:
                built[node] = _build_node(entry, built, lms)
            except UserError:
                raise
            except Exception as error:  # noqa: BLE001 - whatever a hand-edited file does, one line naming the node
                message = one_line(error, 200)
                raise UserError(f"checkpoint node '{node}' cannot be rebuilt ({type(error).__name__}: {message}); "
                                "was the file edited by hand?") from None
        program = cls(
            inputs=[built[n] for n in state["inputs"]],
            outputs=[built[n] for n in state["outputs"]],
            name=state["name"],
            description=state.get("description"),
        )
        program.saved_optimizer_state = state.get("optimizer")
        program.metadata = dict(state.get("metadata") or {})
        return program


def _build_node(entry: dict, built: dict, lms: dict) -> SymbolicNode:
    node = entry["name"]
    if entry["kind"] == "Input":
        return Input(_load_data_model(entry["data_model"], node), name=node)
    module_cls = lookup_module(entry["kind"], node)
    kwargs = dict(entry["config"])
    if issubclass(module_cls, Generator):
        if entry["data_model"] is None or entry["language_model"] is None:
            raise ValueError("a generator needs data_model and language_model")
        module = module_cls(data_model=_load_data_model(entry["data_model"], node),
                            language_model=lms[entry["language_model"]],
                            instructions=kwargs.pop("initial_instructions", None), **kwargs)
    else:
        module = module_cls(**kwargs)
    if entry["variables"] is not None:
        module.set_variables(entry["variables"])
    parents = [built[p] for p in entry["parents"]]
    return module(parents if len(parents) > 1 else parents[0])


def read_state(path) -> dict:
    """A program file's JSON, checked for shape (a wrong shape is one line, not a traceback)."""
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        raise UserError(f"program file not found: {path}; check the path (checkpoints end in .program.json)")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"program file {path} is not valid JSON ({error}); was it written by promptrl?")
    try:
        return check_state(state)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None


def check_state(state) -> dict:
    """The saved program's shape: every node, reference and variable where loading expects it."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise UserError(f"not a promptrl program (format {found!r}, expected {FORMAT!r})")
    try:
        checked = _SavedProgram.model_validate(state).model_dump(by_alias=True)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise UserError(f"malformed program file: {where}: {first['msg']}; was it edited by hand?") from None
    seen: set[str] = set()
    for entry in checked["nodes"]:
        node = entry["name"]
        if node in seen:
            raise UserError(f"malformed program file: node '{node}' appears twice")
        unknown = [p for p in entry["parents"] if p not in seen]
        if unknown:
            raise UserError(f"malformed program file: node '{node}' has unknown parent '{unknown[0]}'")
        if entry["kind"] == "Input" and entry["data_model"] is None:
            raise UserError(f"malformed program file: input '{node}' has no data_model")
        if entry["kind"] != "Input" and not entry["parents"]:
            raise UserError(f"malformed program file: module '{node}' has no parents")
        if entry["language_model"] is not None and entry["language_model"] not in checked["language_models"]:
            raise UserError(f"malformed program file: node '{node}' uses unknown language model "
                            f"'{entry['language_model']}'")
        seen.add(node)
    metadata = checked["metadata"]
    if not isinstance(metadata.get("seed"), (int, type(None))) or isinstance(metadata.get("seed"), bool) \
            or not isinstance(metadata.get("dataset"), (dict, type(None))):
        raise UserError("malformed program file: metadata.seed must be an integer and metadata.dataset a mapping")
    for key in ("inputs", "outputs"):
        unknown = [n for n in checked[key] if n not in seen]
        if unknown or not checked[key]:
            raise UserError(f"malformed program file: {key} " + (f"name unknown node '{unknown[0]}'" if unknown
                                                                  else "is empty"))
    return checked


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)


class _DataModelRef(_Strict):
    import_: str | None = pydantic.Field(None, alias="import")
    spec: dict | None = None


class _Example(_Strict):
    input: dict
    output: dict


class _Variables(_Strict):
    instructions: str | None = None
    examples: list[_Example] = []


class _SavedLanguageModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    model: str


class _SavedNode(_Strict):
    name: str
    kind: str
    parents: list[str] = []
    config: dict = {}
    data_model: _DataModelRef | None = None
    language_model: str | None = None
    variables: _Variables | None = None


class _SavedProgram(_Strict):
    format: str
    name: str
    description: str | None = None
    language_models: dict[str, _SavedLanguageModel]
    nodes: list[_SavedNode] = pydantic.Field(min_length=1)
    inputs: list[str]
    outputs: list[str]
    metadata: dict = {}
    optimizer: dict | None = None


def _data_model_ref(model) -> dict:
    try:
        spec = data_model_to_spec(model)
    except TypeError:
        spec = None
    path = import_path(model)
    if spec is None and path is None:
        raise UserError(
            f"data model {model.__name__} can be neither imported nor written as a spec; "
            "define it in an importable module or use str/int/float/bool/list/Literal fields"
        )
    return {"import": path, "spec": spec}


def _load_data_model(ref: dict, node: str):
    """A registered class named by the file, else the class rebuilt from its spec (never an import)."""
    registered = lookup_data_model(ref.get("import"))
    if registered is not None:
        return registered
    spec = ref.get("spec")
    if not spec:
        raise UserError(f"checkpoint node '{node}': data model {ref.get('import')!r} is not registered and the file "
                        "has no spec; decorate it with @promptrl.register_data_model or pass "
                        "trusted_modules=[its.python.module]")
    if not isinstance(spec.get("fields"), dict) or not isinstance(spec.get("name", ""), str):
        raise UserError(f"checkpoint node '{node}': malformed data model spec (needs name and a fields mapping)")
    return data_model_from_spec(spec.get("name") or node, spec["fields"], spec.get("description"))
