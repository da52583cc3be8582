"""OneOf: one declaration of allowed values, read by pydantic, by plain callers and by the CLI."""

from typing import Annotated

import pytest
from pydantic import BaseModel, ValidationError

from pneumonia_zoo.choices import OneOf
from pneumonia_zoo.errors import UserError

COLOUR = OneOf(("red", "green"), "colour")


class Paint(BaseModel):
    colour: Annotated[str, COLOUR] = "red"


def test_check_returns_an_allowed_value_and_refuses_others_in_one_line() -> None:
    assert COLOUR.check("green") == "green"
    with pytest.raises(UserError) as caught:
        COLOUR.check("blue")
    assert str(caught.value) == "unknown colour 'blue': choose one of red, green"


def test_pydantic_validates_the_annotation_with_the_same_sentence() -> None:
    assert Paint(colour="green").colour == "green"
    with pytest.raises(ValidationError) as caught:
        Paint(colour="blue")
    (error,) = caught.value.errors()
    assert error["loc"] == ("colour",)
    assert error["msg"] == "Value error, unknown colour 'blue': choose one of red, green"


def test_the_json_schema_lists_the_values_and_the_field_keeps_them() -> None:
    assert Paint.model_json_schema()["properties"]["colour"]["enum"] == ["red", "green"]
    assert Paint.model_fields["colour"].metadata == [COLOUR]  # what the CLI reads its choices from


def test_values_may_come_from_a_registry_dict() -> None:
    assert OneOf({"a": 1, "b": 2}, "thing").values == ("a", "b")
