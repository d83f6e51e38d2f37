"""Ready-made programs in Python: the API for code users, and the reference the YAML graphs of
the program config group (conf/program/*.yaml, built by promptrl.graph) are tested against.

Each builder takes the dataset's data models; a data model given explicitly (spec, import
path or class) replaces the dataset's.
"""

from __future__ import annotations

from promptrl.data_model import DataModel, Field, resolve_data_model
from promptrl.modules import ChainOfThought, Generator, Input
from promptrl.program import Program


def dataset_models(dataset_input, dataset_output, input_data_model=None, output_data_model=None):
    """The program's input and output data models: the dataset's, unless given (spec, import path, class)."""
    inputs = resolve_data_model(input_data_model, "Inputs") if input_data_model is not None else dataset_input
    outputs = resolve_data_model(output_data_model, "Outputs") if output_data_model is not None else dataset_output
    return inputs, outputs


def generator_program(language_model, dataset_input=None, dataset_output=None, input_data_model=None,
                      output_data_model=None, instructions=None, name="generator", module=Generator) -> Program:
    inputs, outputs = dataset_models(dataset_input, dataset_output, input_data_model, output_data_model)
    x0 = Input(inputs, name="inputs")
    x1 = module(outputs, language_model, instructions=instructions, name="answer")(x0)
    return Program(x0, x1, name=name, description=f"{module.__name__}: {inputs.__name__} -> {outputs.__name__}")


def chain_of_thought_program(language_model, dataset_input=None, dataset_output=None, input_data_model=None,
                             output_data_model=None, instructions=None, name="chain_of_thought") -> Program:
    return generator_program(language_model, dataset_input, dataset_output, input_data_model, output_data_model,
                             instructions, name, module=ChainOfThought)


class Notes(DataModel):
    notes: str = Field(description="Short notes that help answer the input")


def two_stage_program(language_model, dataset_input=None, dataset_output=None, input_data_model=None,
                      output_data_model=None, notes_instructions=None, instructions=None,
                      name="two_stage") -> Program:
    inputs, outputs = dataset_models(dataset_input, dataset_output, input_data_model, output_data_model)
    x0 = Input(inputs, name="inputs")
    notes = Generator(Notes, language_model, instructions=notes_instructions, name="notes")(x0)
    answer = Generator(outputs, language_model, instructions=instructions, name="answer")([x0, notes])
    return Program(x0, answer, name=name, description=f"notes then answer: {inputs.__name__} -> {outputs.__name__}")
