"""Tool arguments: exact decimals bounded before any arithmetic, argument objects that refuse
unknown names, and the one-line refusal a model reads when its arguments do not fit.

A decimal argument is refused unless it is finite, within its range, and has at most as many
digits before and after the point as the column that stores it (`migrations/0001_init.sql`:
orders.size and orders.price NUMERIC(20, 8), leverage NUMERIC(10, 2), confidence NUMERIC(5, 2));
so whatever is accepted is stored exactly, and the order checks (remainders by the lot and tick
size, the notional) work on numbers far inside the decimal context's 28 digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, cast, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, ErrorDetails, PydanticCustomError, core_schema

from services.mcp_gateway import views
from services.mcp_gateway.rules import REMOVE
from shared.money import plain_decimal as fmt

MAX_TEXT = 40  # characters of a decimal's text: 20 digits, a point, a sign and an exponent fit
MAX_SHOWN = 40  # characters of a refused value echoed back
MAX_MESSAGE = 600  # characters of a whole refusal


@dataclass(frozen=True)
class DecimalBounds:
    """A decimal column's shape (`NUMERIC(integer_digits + places, places)`) and the range allowed."""

    integer_digits: int
    places: int
    minimum: Decimal
    minimum_included: bool = False
    maximum: Decimal | None = None

    def describe(self) -> str:
        """The rule in words, e.g. "a decimal > 0 with at most 12 digits before the point and 8 after"."""
        if self.maximum is not None:  # the range bounds the digits before the point
            low = "from" if self.minimum_included else "above"
            return (
                f"a decimal {low} {fmt(self.minimum)} to {fmt(self.maximum)} "
                f"with at most {self.places} digits after the point"
            )
        low = ">=" if self.minimum_included else ">"
        return (
            f"a decimal {low} {fmt(self.minimum)} with at most {self.integer_digits} digits "
            f"before the point and {self.places} after"
        )

    def parse(self, value: Any) -> Decimal:
        """The value as a plain Decimal, or a `PydanticCustomError` saying what is allowed."""
        number = self._number(value)
        if number is None or not self._fits(number) or not self._in_range(number):
            raise PydanticCustomError("decimal_bounds", "must be {allowed}", {"allowed": self.describe()})
        # In plain form from here on (no exponent, no trailing zeros, no -0): the value reaches
        # orders, commands and messages as the model would write it.
        return Decimal(fmt(number))

    @staticmethod
    def _number(value: Any) -> Decimal | None:
        if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
            return None
        text = value if isinstance(value, str) else str(value)
        if len(text) > MAX_TEXT:
            return None
        try:
            number = Decimal(text.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None

    def _fits(self, number: Decimal) -> bool:
        """At most `integer_digits` before the point and `places` after it, trailing zeros aside;
        read off the digits and exponent, without arithmetic (the exponent may be 100000)."""
        _, digits, exponent = number.as_tuple()
        assert isinstance(exponent, int)  # finite
        significant = len(digits)
        while significant > 1 and digits[significant - 1] == 0:
            significant -= 1
            exponent += 1
        if significant == 1 and digits[0] == 0:
            return True
        places = max(0, -exponent)
        whole = max(0, significant + exponent)
        return places <= self.places and whole <= self.integer_digits

    def _in_range(self, number: Decimal) -> bool:
        low_ok = number >= self.minimum if self.minimum_included else number > self.minimum
        return low_ok and (self.maximum is None or number <= self.maximum)

    def schema(self) -> dict[str, Any]:
        """What the input schema says: a JSON number in range, or the same as exact decimal text."""
        number: dict[str, Any] = {"type": "number"}
        number["minimum" if self.minimum_included else "exclusiveMinimum"] = float(self.minimum)
        if self.maximum is not None:
            number["maximum"] = float(self.maximum)
        text = {
            "type": "string",
            "pattern": rf"^\d{{1,{self.integer_digits}}}(\.\d{{1,{self.places}}})?$",
            "description": f"Exact decimal text: {self.describe()}.",
        }
        return {"anyOf": [number, text]}

    def __get_pydantic_core_schema__(self, _source: Any, _handler: GetCoreSchemaHandler) -> CoreSchema:
        """Validated by `parse` alone (no second Decimal validation); dumped as exact text."""
        text = core_schema.plain_serializer_function_ser_schema(fmt, when_used="json")
        return core_schema.no_info_plain_validator_function(self.parse, serialization=text)

    def __get_pydantic_json_schema__(
        self, _schema: CoreSchema, _handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return self.schema()


# The one validator type of every decimal argument: `Annotated[Decimal, <bounds>]`.
ZERO, ONE, HUNDRED = Decimal(0), Decimal(1), Decimal(100)
Price = Annotated[Decimal, DecimalBounds(12, 8, ZERO)]  # orders.price NUMERIC(20, 8)
Size = Price  # orders.size is NUMERIC(20, 8) too
Leverage = Annotated[Decimal, DecimalBounds(8, 2, ONE, minimum_included=True)]  # NUMERIC(10, 2)
Confidence = Annotated[Decimal, DecimalBounds(3, 2, ZERO, minimum_included=True, maximum=HUNDRED)]


@dataclass(frozen=True)
class Removable:
    """A price argument that may instead be "none": remove that leg of the plan."""

    bounds: DecimalBounds

    def parse(self, value: Any) -> Decimal | str:
        if isinstance(value, str) and value.strip().lower() == REMOVE:
            return REMOVE
        try:
            return self.bounds.parse(value)
        except PydanticCustomError:
            allowed = f'{self.bounds.describe()}, or "{REMOVE}" to remove it'
            raise PydanticCustomError("decimal_bounds", "must be {allowed}", {"allowed": allowed}) from None

    def __get_pydantic_core_schema__(self, _source: Any, _handler: GetCoreSchemaHandler) -> CoreSchema:
        text = core_schema.plain_serializer_function_ser_schema(
            lambda v: v if isinstance(v, str) else fmt(v), when_used="json"
        )
        return core_schema.no_info_plain_validator_function(self.parse, serialization=text)

    def __get_pydantic_json_schema__(
        self, _schema: CoreSchema, _handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = self.bounds.schema()
        schema["anyOf"].append({"const": REMOVE, "description": "Remove this leg."})
        return schema


RemovablePrice = Annotated[Decimal | str, Removable(DecimalBounds(12, 8, ZERO))]


class ExitPlanArg(views.ExitPlanFields):
    """An exit plan as an argument: bounded prices, and no field it does not define."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    take_profit: Price | None = Field(default=None, description="Price at which to take profit.")
    stop_loss: Price | None = Field(default=None, description="Price at which to cut the loss.")


M = TypeVar("M", bound=BaseModel)


def forbid_unknown(model: type[M]) -> type[M]:
    """A subclass of `model` that refuses names it does not define (`additionalProperties: false`
    in its schema): pydantic merges the subclass's config into the inherited one."""
    namespace = {"model_config": ConfigDict(extra="forbid"), "__module__": model.__module__}
    return cast("type[M]", type(model.__name__, (model,), namespace))


def refusal(tool: str, model: type[BaseModel], error: ValidationError) -> str:
    """One line for the model: each argument that does not fit and what is allowed."""
    problems = [_problem(model, e) for e in error.errors(include_url=False)[:5]]
    text = f"Invalid arguments for {tool}: {'; '.join(problems)}."
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _problem(model: type[BaseModel], error: ErrorDetails) -> str:
    path = ".".join(str(part) for part in error["loc"])
    match error["type"]:
        case "extra_forbidden":
            parent = _model_at(model, error["loc"][:-1])
            names = ", ".join(parent.model_fields) if parent else "?"
            where = "argument" if len(error["loc"]) == 1 else "field"
            return f"unknown {where} {_shown(path)}; the {where}s here are {names}"
        case "missing":
            return f"{path} is required"
        case "decimal_bounds":
            return f"{path} {error['msg']} (got {_shown(error['input'])})"
        case _:
            return f"{path}: {error['msg']} (got {_shown(error['input'])})"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model an error location points into (through optional and list fields)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, str):
            field = current.model_fields.get(part)
            current = None if field is None else _as_model(field.annotation)
    return current


def _as_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, UnionType, list, Annotated):
        for arg in get_args(annotation):
            found = _as_model(arg)
            if found is not None:
                return found
    return None
