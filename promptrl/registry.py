"""The classes a saved program may name: a checkpoint is data, never code.

A checkpoint names its module kinds and data models; loading looks those names up here and
nowhere else. Nothing named by a file is ever imported: a class is known because promptrl
defines it, because the user registered it in code (`@register_module`, `@register_data_model`),
or because the user trusted the Python module that defines it (`trust_modules(["mypkg.modules"])`,
the `trusted_modules` config key) - a list that comes from the command line or the experiment
config, never from the file being loaded.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from promptrl.errors import UserError

_MODULES: dict[str, type] = {}
_DATA_MODELS: dict[str, type] = {}


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_module(cls: type | None = None, *, name: str | None = None):
    """Let saved programs name this Module subclass: `@register_module` or `@register_module(name="x")`."""

    def register(cls: type) -> type:
        from promptrl.modules import Module

        if not (isinstance(cls, type) and issubclass(cls, Module)):
            raise UserError(f"register_module: {cls!r} is not a promptrl Module subclass")
        _MODULES[class_path(cls)] = cls
        if name:
            _MODULES[name] = cls
        return cls

    return register(cls) if cls is not None else register


def register_data_model(cls: type) -> type:
    """Let saved programs name this data model class by its import path (else it is rebuilt from its spec)."""
    import pydantic

    if not (isinstance(cls, type) and issubclass(cls, pydantic.BaseModel)):
        raise UserError(f"register_data_model: {cls!r} is not a pydantic/DataModel class")
    _DATA_MODELS[class_path(cls)] = cls
    return cls


def trust_modules(names) -> None:
    """Import Python modules the user names (config or command line) and register every Module
    subclass and data model class they define."""
    import pydantic

    from promptrl.modules import Module

    if isinstance(names, str):
        names = [names]
    for name in names or []:
        try:
            module = importlib.import_module(str(name))
        except ImportError as error:
            raise UserError(f"trusted_modules: cannot import '{name}' ({error}); list importable Python modules, "
                            "e.g. trusted_modules=[mypkg.modules]") from None
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ != module.__name__:
                continue
            if issubclass(obj, Module):
                _MODULES[class_path(obj)] = obj
            elif issubclass(obj, pydantic.BaseModel):
                _DATA_MODELS[class_path(obj)] = obj


def module_kind(cls: type) -> str:
    """The name a checkpoint gives a module class: the registered short name of a library class,
    else its import path (which loading accepts only once the class is registered or trusted)."""
    for name, registered in _MODULES.items():
        if registered is cls and ":" not in name:
            return name
    return class_path(cls)


def lookup_module(kind: Any, node: str) -> type:
    if isinstance(kind, str) and kind in _MODULES:
        return _MODULES[kind]
    raise UserError(
        f"checkpoint node '{node}': module kind {kind!r} is not a registered module; if it is your own class, "
        "decorate it with @promptrl.register_module or pass trusted_modules=[its.python.module]")


def lookup_data_model(path: Any) -> type | None:
    """A registered data model class by import path, or None (then the spec is used)."""
    return _DATA_MODELS.get(path) if isinstance(path, str) else None
