"""Step handlers: what a handler accepts, converting its input and output, and type checks.

A handler is a plain or ``async`` function taking the step's input and, optionally, a
:class:`~pgweave.dsl.StepContext` as second argument. When its input parameter is annotated
(a pydantic model, a TypedDict, a dataclass, ``list[int]``...), the worker validates and
converts the JSON input with pydantic before calling it; whatever it returns is turned into
JSON (pydantic models, dataclasses, dates... included).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, get_args, get_origin, get_type_hints, is_typeddict

from pydantic import BaseModel, PydanticUserError, TypeAdapter
from pydantic_core import to_jsonable_python

_EMPTY = inspect.Parameter.empty
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class HandlerError(TypeError):
    """A handler's signature cannot be used for a step."""


def _unwrap_callable(handler: Callable[..., Any]) -> Callable[..., Any]:
    """The function whose signature and annotations describe ``handler``."""
    if (
        inspect.isroutine(handler)
        or inspect.isclass(handler)
        or isinstance(handler, functools.partial)
    ):
        return handler
    bound: Callable[..., Any] = getattr(handler, "__call__")  # noqa: B004, B009 - a callable object
    return bound


@dataclass(frozen=True)
class HandlerInfo:
    """What pgweave learned about a handler from its signature."""

    handler: Callable[..., Any]
    takes_context: bool
    is_async: bool
    input_annotation: Any
    """The input parameter's annotation (``Any`` when it has none)."""
    output_annotation: Any
    """The return annotation (the awaited type for ``async`` handlers; ``Any`` when none)."""

    @cached_property
    def _input_converter(self) -> Callable[[Any], Any] | None:
        return converter_for(self.input_annotation)

    def convert_input(self, raw: Any) -> Any:
        """The JSON input as the handler's annotated type (pydantic-validated)."""
        convert = self._input_converter
        return raw if convert is None else convert(raw)


def converter_for(annotation: Any) -> Callable[[Any], Any] | None:
    """A function validating JSON data into ``annotation`` (``None``: pass data through).

    pydantic cannot build a schema for ``typing.TypedDict`` before Python 3.12, so a
    TypedDict is converted field by field; a type pydantic cannot handle at all is passed
    through unvalidated rather than making the handler unusable.
    """
    if annotation in (Any, object):
        return None
    try:
        return TypeAdapter(annotation).validate_python
    except PydanticUserError:
        if not is_typeddict(annotation):
            return None
    field_converters = {
        name: convert
        for name, hint in get_type_hints(annotation).items()
        if (convert := converter_for(hint)) is not None
    }

    def convert_typed_dict(raw: Any) -> Any:
        if not isinstance(raw, Mapping):
            raise TypeError(f"expected an object for {describe(annotation)}, got {raw!r}")
        return {
            key: field_converters[key](value) if key in field_converters else value
            for key, value in raw.items()
        }

    return convert_typed_dict


def inspect_handler(handler: Callable[..., Any]) -> HandlerInfo:
    """Read a handler's arity, sync/async nature and annotations; reject unusable ones."""
    if not callable(handler):
        raise HandlerError(f"a handler must be callable, got {handler!r}")
    target = _unwrap_callable(handler)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError) as exc:
        raise HandlerError(f"cannot read the signature of handler {handler!r}: {exc}") from exc
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in _POSITIONAL]
    var_positional = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    required_kw = [
        p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is _EMPTY
    ]
    if required_kw:
        raise HandlerError(
            f"handler {_name(handler)} has required keyword-only parameters {required_kw}; "
            "a handler is called as handler(input) or handler(input, context)"
        )
    if not positional and not var_positional:
        raise HandlerError(
            f"handler {_name(handler)} takes no arguments; it must accept the step input "
            "(and optionally a StepContext)"
        )
    required = [p for p in positional if p.default is _EMPTY]
    if len(required) > 2:
        raise HandlerError(
            f"handler {_name(handler)} requires {len(required)} arguments; "
            "a handler is called as handler(input) or handler(input, context)"
        )
    takes_context = len(positional) >= 2 or var_positional
    try:
        hints = get_type_hints(target, include_extras=False)
    except Exception:  # unresolvable forward references: fall back to no annotations
        hints = {}
    input_annotation = hints.get(positional[0].name, Any) if positional else Any
    output_annotation = hints.get("return", Any)
    is_async = inspect.iscoroutinefunction(target)
    if is_async and get_origin(output_annotation) in (typing.Coroutine, typing.Awaitable):
        output_annotation = get_args(output_annotation)[-1]
    return HandlerInfo(
        handler=handler,
        takes_context=takes_context,
        is_async=is_async,
        input_annotation=input_annotation,
        output_annotation=output_annotation,
    )


def _name(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


def to_json(value: Any) -> Any:
    """A handler's return value as JSON-compatible data (models, dataclasses, dates...)."""
    return to_jsonable_python(value)


# -- what PostgreSQL can store ------------------------------------------------------------------


class UnstorableOutputError(ValueError):
    """A handler's output holds a value PostgreSQL's ``jsonb`` rejects."""


def stored_json(value: Any) -> str:
    """A handler's return value as JSON text that PostgreSQL's ``jsonb`` accepts.

    Raises :class:`UnstorableOutputError` naming where the output holds NaN or ±Infinity
    (not JSON), or a string with NUL or a lone surrogate (not storable as text).
    """
    data = to_json(value)
    try:
        text: str | None = json.dumps(data, allow_nan=False)
    except ValueError:
        text = None
    # json.dumps spells NUL and every surrogate (lone, or half of a pair) as \u escapes:
    # only then is the exact search below needed.
    if text is None or "\\u0000" in text or "\\ud" in text:
        problem = _unstorable(data, "$")
        if problem is not None:
            raise UnstorableOutputError(
                f"the handler's output cannot be stored by PostgreSQL: {problem}"
            )
    if text is None:
        raise UnstorableOutputError("the handler's output cannot be written as JSON")
    return text


def _unstorable(value: Any, path: str) -> str | None:
    """Where and why ``value`` (JSON-compatible data) cannot be stored; None when it can."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path} is a string containing NUL (\\u0000)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path} is a string containing a lone surrogate"
    elif isinstance(value, float) and not math.isfinite(value):
        return f"{path} is {value!r}, which JSON cannot represent"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            problem = _unstorable(str(key), f"{path} key {str(key)!r}") or _unstorable(
                item, f"{path}.{key}"
            )
            if problem is not None:
                return problem
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if (problem := _unstorable(item, f"{path}[{index}]")) is not None:
                return problem
    return None


def storable_text(text: str) -> str:
    """``text`` as PostgreSQL can store it: NUL written as ``\\x00``, lone surrogates escaped."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


# -- definition-time type checks (as far as Python's runtime annotations allow) ---------------


def object_fields(annotation: Any) -> tuple[dict[str, Any], frozenset[str]] | None:
    """Fields (name → annotation) and required names of a TypedDict/model/dataclass type."""
    if is_typeddict(annotation):
        hints = get_type_hints(annotation)
        required: frozenset[str] = getattr(annotation, "__required_keys__", frozenset(hints))
        return dict(hints), frozenset(required)
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        fields = annotation.model_fields
        return (
            {name: field.annotation for name, field in fields.items()},
            frozenset(name for name, field in fields.items() if field.is_required()),
        )
    if inspect.isclass(annotation) and dataclasses.is_dataclass(annotation):
        hints = get_type_hints(annotation)
        return (
            {f.name: hints.get(f.name, Any) for f in dataclasses.fields(annotation)},
            frozenset(
                f.name
                for f in dataclasses.fields(annotation)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ),
        )
    return None


def element_type(annotation: Any) -> Any:
    """The element type of ``list[X]``/``Sequence[X]``/``tuple[X, ...]``; ``Any`` otherwise."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin in (list, Sequence, typing.Sequence, set, frozenset) and len(args) == 1:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return Any


def incompatible(produced: Any, expected: Any) -> bool:
    """True only when two annotations are certainly incompatible (both plain, unrelated classes).

    Generic, union, TypedDict and ``Any`` annotations are never judged: a false alarm would be
    worse than a missed one, since the worker validates the real data anyway.
    """
    if produced in (Any, object) or expected in (Any, object):
        return False
    if not (inspect.isclass(produced) and inspect.isclass(expected)):
        return False
    if is_typeddict(produced) or is_typeddict(expected):
        return False
    if produced is int and expected is float:
        return False
    if issubclass(produced, Mapping) and issubclass(expected, Mapping):
        return False
    if issubclass(produced, BaseModel) and issubclass(expected, (BaseModel, Mapping)):
        return False
    return not issubclass(produced, expected)


def describe(annotation: Any) -> str:
    """A short readable name of an annotation for error messages."""
    if inspect.isclass(annotation) and get_origin(annotation) is None:
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")
