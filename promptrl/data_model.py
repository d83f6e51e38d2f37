"""Data models: the typed inputs and outputs of LM modules (pydantic models).

A data model is declared in Python (subclass `DataModel`) or from a plain spec
(field name -> type + description), e.g. from YAML. The spec form is also how a
saved program re-creates data models whose Python class cannot be imported.
"""

from __future__ import annotations

import importlib
import typing
from typing import Any, Literal

import pydantic
from pydantic import Field  # re-exported: users write `promptrl.Field`

from promptrl.errors import UserError

__all__ = ["DataModel", "Field", "data_model_from_spec", "data_model_to_spec", "resolve_data_model"]


class DataModel(pydantic.BaseModel):
    """Base class of every input/output data model."""

    model_config = pydantic.ConfigDict(extra="forbid")


_SCALARS: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool}
_LISTS: dict[str, Any] = {"list[str]": list[str], "list[int]": list[int], "list[float]": list[float]}
SPEC_TYPES = [*_SCALARS, *_LISTS, "choice"]
_CONSTRAINTS = ("ge", "gt", "le", "lt", "min_length", "max_length")


def _field_type(model_name: str, field: str, spec: dict) -> Any:
    type_name = str(spec.get("type", "str")).replace(" ", "")
    if type_name in _SCALARS:
        return _SCALARS[type_name]
    if type_name in _LISTS:
        return _LISTS[type_name]
    if type_name == "choice":
        choices = spec.get("choices")
        if isinstance(choices, str) or (choices is not None and not isinstance(choices, (list, tuple))):
            raise UserError(f"data model '{model_name}' field '{field}': choices must be a list, e.g. [a, b], "
                            f"got {choices!r}")
        if not choices:
            raise UserError(
                f"data model '{model_name}' field '{field}': type 'choice' needs a non-empty 'choices' list"
            )
        return Literal[tuple(choices)]
    raise UserError(
        f"data model '{model_name}' field '{field}': unknown type '{spec.get('type')}'; "
        f"use one of {', '.join(SPEC_TYPES)}"
    )


def data_model_from_spec(name: str, fields: dict[str, Any], description: str | None = None) -> type[DataModel]:
    """Build a DataModel class from `{field: {"type": ..., "description": ..., "choices": [...]}}`.

    A field may also be given as a bare type name: `{"answer": "int"}`.
    """
    if not fields:
        raise UserError(f"data model '{name}' has no fields; give at least one, e.g. {{answer: {{type: str}}}}")
    definitions = {}
    for field, spec in fields.items():
        if not isinstance(field, str) or not field.isidentifier() or field.startswith(("_", "model_")) \
                or hasattr(pydantic.BaseModel, field):
            raise UserError(f"data model '{name}': field name {field!r} is not allowed; use a Python identifier "
                            "that does not start with '_' or 'model_'")
        if spec is not None and not isinstance(spec, (str, typing.Mapping)):
            raise UserError(f"data model '{name}' field '{field}': expected a type name or "
                            f"{{type: ..., description: ...}}, got {spec!r}")
        spec = {"type": spec} if isinstance(spec, str) else dict(spec or {})
        if not isinstance(spec.get("description", ""), (str, type(None))):
            raise UserError(f"data model '{name}' field '{field}': description must be text")
        for key in _CONSTRAINTS:
            if key in spec and (isinstance(spec[key], bool) or not isinstance(spec[key], (int, float))):
                raise UserError(f"data model '{name}' field '{field}': {key} must be a number, got {spec[key]!r}")
        unknown = set(spec) - {"type", "description", "choices", "default", *_CONSTRAINTS}
        if unknown:
            raise UserError(
                f"data model '{name}' field '{field}': unknown key(s) {sorted(unknown)}; a field takes type, "
                f"description, choices (for choice), default and {', '.join(_CONSTRAINTS)}"
            )
        annotation = _field_type(name, field, spec)
        extras = {k: spec[k] for k in _CONSTRAINTS if k in spec}
        default = spec["default"] if "default" in spec else ...
        definitions[field] = (annotation, Field(default, description=spec.get("description"), **extras))
    model = pydantic.create_model(name, __base__=DataModel, **definitions)
    if description:
        model.__doc__ = description
    return model


def _annotation_to_spec(annotation: Any) -> dict:
    for name, tp in {**_SCALARS, **_LISTS}.items():
        if annotation == tp:
            return {"type": name}
    if typing.get_origin(annotation) is Literal:
        return {"type": "choice", "choices": list(typing.get_args(annotation))}
    raise TypeError(f"cannot express {annotation!r} as a data model spec")


_METADATA_KEYS = {"Ge": "ge", "Gt": "gt", "Le": "le", "Lt": "lt", "MinLen": "min_length", "MaxLen": "max_length"}


def data_model_to_spec(model: type[pydantic.BaseModel]) -> dict:
    """The inverse of `data_model_from_spec` (for the field types it supports)."""
    fields = {}
    for name, info in model.model_fields.items():
        spec = _annotation_to_spec(info.annotation)
        if info.description is not None:
            spec["description"] = info.description
        if not info.is_required():
            if info.default_factory is not None:
                raise TypeError(f"field {name}: a default_factory cannot be written as a spec")
            spec["default"] = info.default
        for constraint in info.metadata:
            key = _METADATA_KEYS.get(type(constraint).__name__)
            if key is None:
                raise TypeError(f"field {name}: constraint {constraint!r} cannot be written as a spec")
            spec[key] = getattr(constraint, key)
        fields[name] = spec
    doc = model.__doc__ if model.__doc__ and model.__doc__ != DataModel.__doc__ else None
    return {"name": model.__name__, "description": doc, "fields": fields}


def import_path(model: type) -> str | None:
    """`module:QualName` if the class can be re-imported by that name, else None."""
    module = getattr(model, "__module__", None)
    if not module or module == "__main__" or "<locals>" in model.__qualname__:
        return None
    try:
        found = getattr(importlib.import_module(module), model.__qualname__, None)
    except ImportError:
        return None
    return f"{module}:{model.__qualname__}" if found is model else None


def import_object(path: str) -> Any:
    """Import `pkg.module:Name` or `pkg.module.Name`."""
    module, _, name = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise UserError(f"cannot import '{path}' ({error}); check the module path and that it is installed") from None


def resolve_data_model(value: Any, name: str = "DataModel") -> type[pydantic.BaseModel]:
    """A data model from a class, an import path string, or a spec dict ({name?, description?, fields})."""
    if isinstance(value, type) and issubclass(value, pydantic.BaseModel):
        return value
    if isinstance(value, str):
        model = import_object(value)
        if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
            raise UserError(f"'{value}' is not a pydantic/DataModel class")
        return model
    if isinstance(value, typing.Mapping):
        value = dict(value)
        if "fields" not in value:
            raise UserError(f"data model spec '{name}' needs a 'fields' mapping (field -> {{type, description}})")
        return data_model_from_spec(value.get("name") or name, dict(value["fields"]), value.get("description"))
    raise UserError(f"data model '{name}': expected a class, an import path or a spec with 'fields', got {value!r}")
