"""Programs declared as data: named nodes, each a module reading other nodes (`program=graph`).

    nodes:
      notes:  {inputs: [input], output: {name: Notes, fields: {notes: {type: str}}}, instructions: Write short notes.}
      answer: {inputs: [input, notes], output: dataset, module: chain_of_thought}
    outputs: [answer]

`input` is the program's input (the dataset's input data model). A node's `output` is its data
model: `dataset` (the dataset's output data model), a spec `{name, description, fields}` or an
import path. `module` is one of MODULE_KINDS (default generator). The canned programs of
conf/program/ are graphs too; promptrl.builders keeps their Python form as the reference.
"""

from __future__ import annotations

import graphlib
from pathlib import Path
from typing import Any, Mapping

from promptrl.builders import dataset_models
from promptrl.data_model import resolve_data_model
from promptrl.errors import UserError
from promptrl.modules import ChainOfThought, Generator, Input
from promptrl.program import Program
from promptrl.registry import register_data_model

INPUT = "input"  # how nodes name the program input
INPUT_NODE = "inputs"  # the program's Input node, named as the Python builders name it
DATASET = "dataset"  # `output: dataset`
MODULE_KINDS = {"generator": Generator, "chain_of_thought": ChainOfThought}
NODE_KEYS = ("inputs", "output", "module", "instructions")
SPEC_KEYS = ("name", "description", "fields")
FILE_KEYS = ("name", "description", "nodes", "outputs", "input_data_model", "output_data_model")
EXAMPLE = "e.g. nodes: {answer: {inputs: [input], output: dataset}} and outputs: [answer]"


def graph_program(language_model, dataset_input=None, dataset_output=None, *, nodes=None, outputs=None,
                  name: str | None = None, description: str | None = None, path=None, input_data_model=None,
                  output_data_model=None, **params) -> Program:
    """The program declared by `nodes` and `outputs`, or by the YAML file at `path` (its keys:
    FILE_KEYS; a key also given here wins over the file's).

    `description` may name `{input}` and `{output}`: the input data model and the dataset's output
    data model. `params` are the config's other top-level keys (e.g. `instructions`): values the
    nodes refer to with `${...instructions}`, used by the config, not here.
    """
    where = "program graph"
    if path is not None:
        where = f"program graph {path}"
        declared = read_graph_file(path)
        given = dict(name=name, description=description, nodes=nodes, outputs=outputs,
                     input_data_model=input_data_model, output_data_model=output_data_model)
        merged = {key: declared.get(key) if value is None else value for key, value in given.items()}
        name, description, nodes, outputs = merged["name"], merged["description"], merged["nodes"], merged["outputs"]
        input_data_model, output_data_model = merged["input_data_model"], merged["output_data_model"]
        name = name or Path(path).stem
    elif nodes is None:
        raise UserError("program=graph needs a graph: program.path=my_graph.yaml (a YAML file with nodes and "
                        "outputs), or program.nodes={...} program.outputs=[...]; " + EXAMPLE)
    order = check_graph(nodes, outputs, where)
    outputs = [outputs] if isinstance(outputs, str) else list(outputs)
    dataset_in, dataset_out = dataset_models(dataset_input, dataset_output, input_data_model, output_data_model)
    if dataset_in is None:
        raise UserError(f"{where}: no input data model; give the dataset's (dataset_input=) or input_data_model=")

    built = {INPUT: Input(dataset_in, name=INPUT_NODE)}
    for node in order:
        spec = nodes[node]
        module_cls = _module_kind(spec.get("module"), node, where)
        model = _node_data_model(spec["output"], node, dataset_out, where)
        instructions = spec.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise UserError(f"{where}: node '{node}': instructions must be text, got {instructions!r}")
        parents = [built[i] for i in _as_list(spec["inputs"])]
        module = module_cls(model, language_model, instructions=instructions, name=node)
        built[node] = module(parents if len(parents) > 1 else parents[0])

    _check_output_fields(outputs, built, where)
    name = name or "graph"
    if description is None:
        produced = ", ".join(built[o].module.data_model.__name__ for o in outputs)
        description = f"{', '.join(order)}: {{input}} -> {produced}"
    description = str(description).replace("{input}", dataset_in.__name__)
    if dataset_out is not None:
        description = description.replace("{output}", dataset_out.__name__)
    ends = [built[o] for o in outputs]
    return Program(built[INPUT], ends if len(ends) > 1 else ends[0], name=name, description=description)


def read_graph_file(path) -> dict:
    """A graph YAML file (FILE_KEYS), checked for shape; every problem is one line naming the file."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"program graph file not found: {path}; check program.path (a YAML file with nodes "
                        "and outputs, relative to where you run promptrl)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"program graph file {path} cannot be read ({error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise UserError(f"program graph file {path} is not valid YAML{at} ({problem})") from None
    if not isinstance(data, dict):
        raise UserError(f"program graph file {path} must be a mapping with nodes and outputs; {EXAMPLE}")
    unknown = sorted(str(k) for k in data if k not in FILE_KEYS)
    if unknown:
        raise UserError(f"program graph file {path}: unknown key(s) {unknown}; it takes {', '.join(FILE_KEYS)}")
    return data


def check_graph(nodes, outputs, where: str = "program graph") -> list[str]:
    """The node names in an order where each node comes after the nodes it reads; every mistake is
    one UserError naming the node (unknown input, cycle, unused node, missing outputs...)."""
    if not isinstance(nodes, Mapping) or not nodes:
        raise UserError(f"{where}: nodes must be a non-empty mapping of node name -> module; {EXAMPLE}")
    if outputs is None or (isinstance(outputs, (list, tuple)) and not outputs):
        raise UserError(f"{where}: outputs is missing; list the node(s) whose fields the program returns, "
                        f"e.g. outputs: [{list(nodes)[-1]}]")
    outputs = _as_list(outputs)
    if outputs is None or not all(isinstance(o, str) for o in outputs):
        raise UserError(f"{where}: outputs must be a list of node names, got {outputs!r}")
    names = ", ".join(map(str, nodes))
    for node, spec in nodes.items():
        _check_node(node, spec, nodes, where)
    for out in outputs:
        if out not in nodes:
            raise UserError(f"{where}: output '{out}' is not a node; outputs name nodes ({names})")
    if len(set(outputs)) < len(outputs):
        raise UserError(f"{where}: outputs lists a node twice: {outputs}")

    reads = {node: [i for i in _as_list(spec["inputs"]) if i != INPUT] for node, spec in nodes.items()}
    try:
        order = list(graphlib.TopologicalSorter(reads).static_order())
    except graphlib.CycleError as error:
        cycle = error.args[1]  # each node feeds the next
        if len(cycle) == 2:
            raise UserError(f"{where}: node '{cycle[0]}' lists itself in its inputs; a node cannot read its "
                            "own output") from None
        raise UserError(f"{where}: nodes form a cycle {' -> '.join(cycle)} (each feeds the next); remove one "
                        "of these inputs") from None

    used, todo = set(), list(outputs)
    while todo:
        node = todo.pop()
        if node not in used:
            used.add(node)
            todo.extend(reads[node])
    unused = [n for n in nodes if n not in used]
    if unused:
        listed = ", ".join(f"'{n}'" for n in unused)
        what = f"node {listed} is" if len(unused) == 1 else f"nodes {listed} are"
        raise UserError(f"{where}: {what} unused (no output depends on it); add it to outputs or to a "
                        "node's inputs, or remove it")
    return order


def _check_node(node, spec, nodes, where: str) -> None:
    if not isinstance(node, str) or not node:
        raise UserError(f"{where}: node name {node!r} must be text")
    if node in (INPUT, INPUT_NODE):
        raise UserError(f"{where}: node name '{node}' is reserved for the program input; rename the node")
    if not isinstance(spec, Mapping):
        raise UserError(f"{where}: node '{node}' must be a mapping ({', '.join(NODE_KEYS)}), got {spec!r}")
    unknown = sorted(str(k) for k in spec if k not in NODE_KEYS)
    if unknown:
        raise UserError(f"{where}: node '{node}': unknown key(s) {unknown}; a node takes {', '.join(NODE_KEYS)}")
    for key in ("inputs", "output"):
        if spec.get(key) is None:
            hint = "inputs: [input]" if key == "inputs" else "output: dataset"
            raise UserError(f"{where}: node '{node}' has no {key}; e.g. {hint}")
    inputs = _as_list(spec["inputs"])
    if not inputs or not all(isinstance(i, str) for i in inputs):
        raise UserError(f"{where}: node '{node}': inputs must be a list of node names or input, got {spec['inputs']!r}")
    for i in inputs:
        if i != INPUT and i not in nodes:
            known = ", ".join([INPUT, *(n for n in nodes if n != node)])
            raise UserError(f"{where}: node '{node}' reads unknown input '{i}'; inputs are input (the program "
                            f"input) or node names ({known})")
    if len(set(inputs)) < len(inputs):
        raise UserError(f"{where}: node '{node}' lists an input twice: {inputs}")


def _module_kind(kind, node: str, where: str) -> type[Generator]:
    kind = "generator" if kind is None else kind
    if kind not in MODULE_KINDS:
        raise UserError(f"{where}: node '{node}': unknown module {kind!r}; use one of {', '.join(MODULE_KINDS)} "
                        "(other module classes: a Python builder)")
    return MODULE_KINDS[kind]


def _node_data_model(value: Any, node: str, dataset_output, where: str):
    """`dataset`, a spec {name, description, fields} or an import path; errors name the node."""
    if value == DATASET:
        if dataset_output is None:
            raise UserError(f"{where}: node '{node}': output: dataset, but there is no dataset output data model; "
                            "give the node's data model, e.g. output: {name: Answer, fields: {answer: str}}")
        return dataset_output
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in SPEC_KEYS)
        if unknown:
            raise UserError(f"{where}: node '{node}': output data model has unknown key(s) {unknown}; "
                            f"a spec takes {', '.join(SPEC_KEYS)}, e.g. {{name: Notes, fields: {{notes: str}}}}")
        if not isinstance(value.get("fields"), Mapping):
            raise UserError(f"{where}: node '{node}': output data model needs a fields mapping (field -> "
                            "{type, description}), e.g. {name: Notes, fields: {notes: {type: str}}}")
    elif not isinstance(value, (str, type)):
        raise UserError(f"{where}: node '{node}': output must be dataset, a data model spec or an import path, "
                        f"got {value!r}")
    default_name = "".join(part.capitalize() for part in node.split("_")) or "Output"
    try:
        model = resolve_data_model(value, default_name)
    except UserError as error:
        raise UserError(f"{where}: node '{node}': output: {error}") from None
    if isinstance(value, str):
        # The config chose this class: its checkpoints may name it (as build_program registers module classes).
        register_data_model(model)
    return model


def _check_output_fields(outputs: list[str], built: dict, where: str) -> None:
    """Several outputs are merged into one record: a field two of them produce would be lost."""
    owner: dict[str, str] = {}
    for out in outputs:
        for field in built[out].data_model.model_fields:
            if field in owner:
                raise UserError(f"{where}: outputs '{owner[field]}' and '{out}' both produce field '{field}'; "
                                "keep one of them in outputs")
            owner[field] = out


def _as_list(value) -> list | None:
    """A name or a list of names as a list; None for anything else (the caller names the mistake)."""
    return [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
