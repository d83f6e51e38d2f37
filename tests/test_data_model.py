"""Data models from specs (YAML-style dicts) and back."""

from __future__ import annotations

import typing
from typing import Literal

import pydantic
import pytest

from promptrl import DataModel, Field, UserError, data_model_from_spec
from promptrl.data_model import SPEC_TYPES, data_model_to_spec, resolve_data_model


def test_spec_scalar_types_validate_and_coerce():
    model = data_model_from_spec(
        "Row", {"s": {"type": "str"}, "i": {"type": "int"}, "f": {"type": "float"}, "b": {"type": "bool"}}
    )
    row = model(s="hello", i="3", f="1.5", b="true")
    assert (row.s, row.i, row.f, row.b) == ("hello", 3, 1.5, True)
    assert type(row.i) is int and type(row.f) is float and type(row.b) is bool
    with pytest.raises(pydantic.ValidationError):
        model(s="x", i="three", f=1.0, b=True)
    with pytest.raises(pydantic.ValidationError):
        model(s="x", i=1, f="not a number", b=True)


def test_spec_fields_are_required_and_extra_keys_forbidden():
    model = data_model_from_spec("Row", {"answer": {"type": "int"}})
    with pytest.raises(pydantic.ValidationError):
        model()
    # An LM reply with an unexpected key must fail validation (a failed prediction), not pass silently.
    with pytest.raises(pydantic.ValidationError):
        model(answer=1, extra="x")


def test_spec_list_of_str():
    model = data_model_from_spec("Tags", {"tags": {"type": "list[str]", "description": "Some tags"}})
    assert model(tags=["a", "b"]).tags == ["a", "b"]
    schema = model.model_json_schema()
    assert schema["properties"]["tags"]["type"] == "array"
    assert schema["properties"]["tags"]["items"] == {"type": "string"}
    assert schema["properties"]["tags"]["description"] == "Some tags"
    with pytest.raises(pydantic.ValidationError):
        model(tags="a")


def test_spec_list_type_tolerates_spaces():
    model = data_model_from_spec("Nums", {"xs": "list[ int ]"})
    assert model(xs=[1, "2"]).xs == [1, 2]


def test_spec_choice_is_a_literal_and_rejects_other_values():
    model = data_model_from_spec("Label", {"answer": {"type": "choice", "choices": ["positive", "negative"]}})
    annotation = model.model_fields["answer"].annotation
    assert typing.get_origin(annotation) is Literal
    assert set(typing.get_args(annotation)) == {"positive", "negative"}
    assert model(answer="negative").answer == "negative"
    with pytest.raises(pydantic.ValidationError):
        model(answer="neutral")
    assert set(model.model_json_schema()["properties"]["answer"]["enum"]) == {"positive", "negative"}


def test_spec_unknown_type_names_field_and_lists_valid_types():
    with pytest.raises(UserError) as info:
        data_model_from_spec("Row", {"question": "str", "answer": {"type": "integer"}})
    message = str(info.value)
    assert "\n" not in message
    assert "'answer'" in message
    assert "integer" in message
    for type_name in SPEC_TYPES:
        assert type_name in message
    assert {"str", "int", "float", "bool", "list[str]", "choice"} <= set(SPEC_TYPES)


@pytest.mark.parametrize("spec", [{"type": "choice"}, {"type": "choice", "choices": []}])
def test_spec_choice_without_choices_is_a_user_error(spec):
    with pytest.raises(UserError) as info:
        data_model_from_spec("Label", {"answer": spec})
    message = str(info.value)
    assert "\n" not in message
    assert "'answer'" in message and "choices" in message


def test_spec_unknown_field_key_is_a_user_error():
    with pytest.raises(UserError, match="descripton"):
        data_model_from_spec("Row", {"answer": {"type": "str", "descripton": "typo"}})


def test_spec_without_fields_is_a_user_error():
    with pytest.raises(UserError, match="no fields"):
        data_model_from_spec("Empty", {})


def test_spec_bare_type_string_and_missing_type_default_to_str():
    model = data_model_from_spec("Row", {"answer": "int", "note": None, "text": {"description": "free text"}})
    assert model.model_fields["answer"].annotation is int
    assert model.model_fields["note"].annotation is str
    assert model.model_fields["text"].annotation is str
    assert model(answer="7", note="n", text="t").answer == 7


def test_spec_descriptions_and_model_description_reach_the_json_schema():
    model = data_model_from_spec(
        "MathAnswer", {"answer": {"type": "float", "description": "The numerical answer"}}, "The final answer"
    )
    schema = model.model_json_schema()
    assert schema["title"] == "MathAnswer"
    assert schema["description"] == "The final answer"
    assert schema["properties"]["answer"]["description"] == "The numerical answer"
    assert issubclass(model, DataModel)


def test_data_model_to_spec_round_trip_gives_same_json_schema():
    fields = {
        "question": {"type": "str", "description": "The question"},
        "count": "int",
        "score": {"type": "float"},
        "ok": {"type": "bool", "description": "Is it ok"},
        "tags": {"type": "list[str]"},
        "ids": {"type": "list[int]"},
        "weights": {"type": "list[float]"},
        "label": {"type": "choice", "choices": ["a", "b", "c"], "description": "The label"},
    }
    model = data_model_from_spec("Everything", fields, "All the supported types")
    spec = data_model_to_spec(model)
    assert spec["name"] == "Everything"
    assert spec["description"] == "All the supported types"
    assert spec["fields"]["label"] == {"type": "choice", "choices": ["a", "b", "c"], "description": "The label"}
    again = data_model_from_spec(spec["name"], spec["fields"], spec["description"])
    assert again.model_json_schema() == model.model_json_schema()


def test_data_model_to_spec_of_a_python_class_round_trips():
    class Verdict(DataModel):
        """Was the answer right?"""

        verdict: Literal["right", "wrong"] = Field(description="The verdict")
        reasons: list[str] = Field(description="Why")

    spec = data_model_to_spec(Verdict)
    assert spec["description"] == "Was the answer right?"
    rebuilt = data_model_from_spec(spec["name"], spec["fields"], spec["description"])
    assert rebuilt.model_json_schema() == Verdict.model_json_schema()


def test_data_model_to_spec_without_docstring_has_no_description():
    class Plain(DataModel):
        answer: str

    assert data_model_to_spec(Plain)["description"] is None


def test_data_model_to_spec_rejects_types_a_spec_cannot_express():
    class Nested(DataModel):
        mapping: dict[str, int]

    with pytest.raises(TypeError):
        data_model_to_spec(Nested)


def test_resolve_data_model_accepts_class_import_path_and_spec():
    from promptrl.datasets.synthetic import Review

    assert resolve_data_model(Review) is Review
    assert resolve_data_model("promptrl.datasets.synthetic:Review") is Review
    assert resolve_data_model("promptrl.datasets.synthetic.Review") is Review
    model = resolve_data_model({"fields": {"answer": "int"}}, name="Outputs")
    assert model.__name__ == "Outputs"
    assert model(answer=3).answer == 3
    named = resolve_data_model({"name": "Custom", "fields": {"answer": "int"}}, name="Outputs")
    assert named.__name__ == "Custom"


def test_resolve_data_model_errors_are_user_errors():
    with pytest.raises(UserError, match="fields"):
        resolve_data_model({"answer": "int"}, name="Outputs")
    with pytest.raises(UserError, match="promptrl.nowhere:Thing"):
        resolve_data_model("promptrl.nowhere:Thing")
    with pytest.raises(UserError, match="not a pydantic"):
        resolve_data_model("promptrl.errors:UserError")
    with pytest.raises(UserError):
        resolve_data_model(42)
