"""Demonstrations: few-shot examples from the program's own rewarded predictions or from labels.

A labelled demonstration pairs the input a generator saw with the ground-truth output of the
example, so a task the model gets 0 % right still gets demonstrations. Only a generator whose
output is a program output can be labelled, and with the labelled fields that are its own output
fields; fields the label does not hold (a chain of thought's `thinking`) are filled from the
program's own output on that example when that output agrees with the label (bootstrapping), else
left out.
"""

from __future__ import annotations

import json

DEMO_SOURCES = ("predictions", "labels", "mixed")


def check_demos(owner: str, demos: str) -> None:
    if demos not in DEMO_SOURCES:
        from promptrl.errors import UserError

        raise UserError(f"{owner}: demos={demos!r} is not one of {', '.join(DEMO_SOURCES)}; e.g. optimizer.demos=mixed")


def input_key(value: dict) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def output_generator_names(program) -> set[str]:
    """Names of the generators whose output is an output of the program."""
    return {node.module.name for node in program.outputs if node.module is not None}


def labelled_demo(generator, prediction, program_input_only: bool) -> dict | None:
    """{"input", "output"} for `generator` on `prediction`'s example with the label as output, or None.

    The input is what the generator saw in the trace; without a trace step (the program failed
    before it), the example's own input when the generator reads only the program input."""
    if prediction.y_true is None:
        return None
    label = prediction.y_true.model_dump() if hasattr(prediction.y_true, "model_dump") else dict(prediction.y_true)
    fields = list(generator.output_data_model.model_fields)
    label = {name: value for name, value in label.items() if name in fields}  # this generator's part
    if not label:
        return None
    step = next((s for s in prediction.trace if s["module"] == generator.name), None)
    if step is not None:
        inputs, produced = step["input"], step["output"]
    elif program_input_only and hasattr(prediction.x, "model_dump"):
        inputs, produced = prediction.x.model_dump(), {}
    else:
        return None
    from promptrl.rewards import values_match

    # The program's own extra fields (a chain of thought) only when its output agrees with the label:
    # reasoning that led to another answer would contradict the demonstration.
    if not all(name in produced and values_match(value, produced[name]) for name, value in label.items()):
        produced = {}
    output = {name: label[name] if name in label else produced[name] for name in fields
              if name in label or name in produced}
    return {"input": inputs, "output": output}


def reads_program_input_only(program, generator) -> bool:
    node = next((n for n in program.nodes if n.module is generator), None)
    return node is not None and all(parent in program.inputs for parent in node.parents)
