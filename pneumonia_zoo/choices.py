"""`OneOf`: the allowed values of a string option, declared once beside what they name.

One object answers every reader: `Annotated[str, OneOf(...)]` validates a pydantic field (and lists the
values in its JSON schema), the CLI reads `.values` to offer them as choices, and code that takes the
value as a plain argument calls `.check()`. The refusal is the same sentence everywhere.
"""

from collections.abc import Iterable
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from pneumonia_zoo.errors import UserError


class OneOf:
    """`values`: what may be given; `what`: how the refusal names the option ("architecture")."""

    def __init__(self, values: Iterable[str], what: str) -> None:
        self.values: tuple[str, ...] = tuple(values)
        self.what = what

    def __repr__(self) -> str:
        return f"OneOf({self.values!r}, {self.what!r})"

    def refusal(self, value: object) -> str:
        return f"unknown {self.what} '{value}': choose one of {', '.join(self.values)}"

    def check(self, value: str) -> str:
        """`value` if allowed, else a UserError naming the allowed values."""
        if value not in self.values:
            raise UserError(self.refusal(value))
        return value

    # -- pydantic: `Annotated[str, OneOf(...)]` ----------------------------------------------------

    def _validate(self, value: str) -> str:
        if value not in self.values:
            raise ValueError(self.refusal(value))  # pydantic reports a ValueError as a validation error
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(schema) | {"enum": list(self.values)}
