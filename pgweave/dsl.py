"""The flow DSL: an immutable builder of DAG flows, validated as they are built.

    flow = (
        Flow[SiteInput]("analyze_website", max_attempts=3, timeout=30)
        .step("website", fetch_website)                        # gets the flow input
        .step("summary", summarize, depends_on=["website"])    # gets {"website": <output>}
        .map("pages", fetch_page, array="website")             # one task per element
    )

Root handlers get the flow input, dependent handlers ``{dep_slug: output}`` (completed
dependencies only), map handlers one element of an array. A handler may take a
:class:`StepContext` as second argument. Every method returns a new ``Flow``; nothing is
modified in place, so partial flows can be shared and extended safely.

Typing: ``Flow[T]`` makes a type checker verify that root handlers accept ``T`` and that a
root ``.map`` is only used on a ``Flow[list[E]]`` with a handler accepting ``E``. Dependency
outputs cannot be tracked by slug in Python's type system, so dependent handlers declare
their input themselves (typically a ``TypedDict`` keyed by dependency slug); the DSL checks
at definition time that its keys are dependencies of the step and that annotated types of
producers and consumers do not contradict each other.
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import (
    Any,
    Generic,
    Literal,
    TypeAlias,
    TypedDict,
    TypeVar,
    Unpack,
    overload,
)

from pgweave.handlers import (
    HandlerError,
    HandlerInfo,
    describe,
    element_type,
    incompatible,
    inspect_handler,
    object_fields,
)

WhenMode: TypeAlias = Literal["fail", "skip", "skip-cascade"]
StepType: TypeAlias = Literal["single", "map"]
WHEN_MODES: tuple[str, ...] = ("fail", "skip", "skip-cascade")

SLUG_PATTERN = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MAX_SLUG_LENGTH = 128
MAX_FLOW_SLUG_LENGTH = 47
"""pgmq's queue-name limit (pgmq.validate_queue_name): a flow slug names its queue."""
RESERVED_SLUGS = frozenset({"run"})

InputT = TypeVar("InputT", covariant=True)
I = TypeVar("I")  # noqa: E741 - a handler's input
E = TypeVar("E")  # an array element


class FlowDefinitionError(ValueError):
    """A flow or step definition is invalid (the message says what and where)."""


@dataclass(frozen=True)
class StepContext:
    """What a handler may receive as second argument, besides its input."""

    run_id: uuid.UUID
    flow_slug: str
    step_slug: str
    task_index: int
    msg_id: int
    flow_input: Any
    """The run's input (loaded on demand for dependent steps)."""
    worker_id: uuid.UUID
    attempt: int = 1
    """Which delivery of the task this is (pgmq's read count of its message)."""
    shutdown_event: threading.Event = field(default_factory=threading.Event, repr=False)
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def shutting_down(self) -> bool:
        """True once the worker is stopping; long handlers may wrap up early."""
        return self.shutdown_event.is_set()

    @property
    def cancelled(self) -> bool:
        """True once the task's result will be discarded: its run was cancelled or the
        step's timeout passed. Sync handlers should check it and return early."""
        return self.cancel_event.is_set()


RETRY_DELAY_CAP = 3600
"""The engine's largest handler-chosen retry delay, in seconds (``fail_task_with_details``)."""


class RetryAfter(Exception):  # noqa: N818 (the name users ask for: a signal, not an error)
    """Raised by a handler: fail this attempt and retry the task after ``seconds``.

    The delay replaces the step's exponential backoff while attempts remain (it is ignored
    once they are exhausted). It must be finite and from 0 to :data:`RETRY_DELAY_CAP`;
    anything else raises ``ValueError`` here, before the worker calls the database.
    """

    def __init__(self, seconds: float, message: str | None = None) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ValueError(f"RetryAfter needs a number of seconds, got {seconds!r}")
        if not math.isfinite(seconds) or not 0 <= seconds <= RETRY_DELAY_CAP:
            raise ValueError(
                f"RetryAfter seconds must be finite and from 0 to {RETRY_DELAY_CAP}, got {seconds!r}"
            )
        self.seconds = float(seconds)
        super().__init__(message or f"retry after {self.seconds:g} s")


Handler: TypeAlias = Callable[[I], object] | Callable[[I, StepContext], object]
"""A step handler: ``handler(input)`` or ``handler(input, context)``, plain or ``async``."""


@dataclass(frozen=True)
class FlowOptions:
    """Flow-wide defaults; ``None`` leaves the SQL default (3 attempts, 5 s, 60 s)."""

    max_attempts: int | None = None
    base_delay: int | None = None
    timeout: int | None = None


@dataclass(frozen=True)
class StepOptions:
    """Per-step overrides of the flow options; ``None`` inherits the flow's value."""

    max_attempts: int | None = None
    base_delay: int | None = None
    timeout: int | None = None
    start_delay: int | None = None


class StepKeywords(TypedDict, total=False):
    """The options :meth:`Flow.step` and :meth:`Flow.map` take as keywords; one left out
    (or ``None``) inherits the flow's value or the SQL default."""

    max_attempts: int | None
    base_delay: int | None
    timeout: int | None
    start_delay: int | None
    if_: Mapping[str, Any] | None
    """A JSON containment pattern the step's input must match (else ``when_unmet``)."""
    if_not: Mapping[str, Any] | None
    """A JSON containment pattern the step's input must not match."""
    when_unmet: WhenMode | None
    """What an unmet condition does: ``fail``, ``skip`` or ``skip-cascade``."""
    when_exhausted: WhenMode | None
    """What a task out of attempts does: ``fail``, ``skip`` or ``skip-cascade``."""


def _refuse_unknown(method: str, options: Mapping[str, object]) -> None:
    """Raise the ``TypeError`` Python raises for an unexpected keyword argument."""
    for name in options:
        if name not in StepKeywords.__annotations__:
            raise TypeError(f"Flow.{method}() got an unexpected keyword argument {name!r}")


@dataclass(frozen=True)
class StepDefinition:
    """One step of a flow, as defined (see :meth:`Flow.step` and :meth:`Flow.map`)."""

    slug: str
    handler: Callable[..., Any] = field(repr=False)
    info: HandlerInfo = field(repr=False, compare=False)
    step_type: StepType
    dependencies: tuple[str, ...]
    """Dependency slugs in the order given (for a map: the array's step, if any)."""
    options: StepOptions
    required_input_pattern: Mapping[str, Any] | None = None
    forbidden_input_pattern: Mapping[str, Any] | None = None
    when_unmet: WhenMode | None = None
    """``None`` means the SQL default 'skip'."""
    when_exhausted: WhenMode | None = None
    """``None`` means the SQL default 'fail'."""
    index: int = 0

    @property
    def is_root(self) -> bool:
        """True for a step without dependencies (it gets the flow input)."""
        return not self.dependencies

    @property
    def effective_when_unmet(self) -> WhenMode:
        """The mode the database stores."""
        return self.when_unmet or "skip"

    @property
    def effective_when_exhausted(self) -> WhenMode:
        """The mode the database stores."""
        return self.when_exhausted or "fail"


def validate_slug(slug: object, what: str) -> str:
    """Check a flow/step slug with the same rules as ``pgflow.is_valid_slug``."""
    if not isinstance(slug, str):
        raise FlowDefinitionError(f"{what} must be a string, got {slug!r}")
    if not slug:
        raise FlowDefinitionError(f"{what} must not be empty")
    if len(slug) > MAX_SLUG_LENGTH:
        raise FlowDefinitionError(
            f"{what} {slug[:20]!r}... is {len(slug)} characters long (at most {MAX_SLUG_LENGTH})"
        )
    if not SLUG_PATTERN.match(slug):
        raise FlowDefinitionError(
            f"{what} {slug!r} is invalid: use letters, digits and underscores, "
            "not starting with a digit"
        )
    if slug in RESERVED_SLUGS:
        raise FlowDefinitionError(f"{what} {slug!r} is reserved")
    return slug


def _check_int(where: str, name: str, value: object, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FlowDefinitionError(f"{where}: {name} must be an integer, got {value!r}")
    if value < minimum:
        raise FlowDefinitionError(f"{where}: {name} must be >= {minimum}, got {value}")
    return value


def _check_mode(where: str, name: str, value: object) -> WhenMode | None:
    if value is None:
        return None
    if value not in WHEN_MODES:
        raise FlowDefinitionError(
            f"{where}: {name} must be one of {', '.join(WHEN_MODES)}, got {value!r}"
        )
    mode: WhenMode = value  # type: ignore[assignment]
    return mode


def _check_pattern(where: str, name: str, value: object) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise FlowDefinitionError(f"{where}: {name} must be a JSON object (a dict), got {value!r}")
    try:
        normalised: dict[str, Any] = json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise FlowDefinitionError(f"{where}: {name} is not JSON-serialisable: {exc}") from exc
    return normalised


class Flow(Generic[InputT]):
    """An immutable flow definition; build it with :meth:`step` and :meth:`map`."""

    __slots__ = ("_options", "_slug", "_steps")

    _slug: str
    _options: FlowOptions
    _steps: tuple[StepDefinition, ...]

    def __init__(
        self,
        slug: str,
        *,
        max_attempts: int | None = None,
        base_delay: int | None = None,
        timeout: int | None = None,
    ) -> None:
        where = f"flow {slug!r}"
        validate_slug(slug, "flow slug")
        if len(slug) > MAX_FLOW_SLUG_LENGTH:
            raise FlowDefinitionError(
                f"{where}: the slug is {len(slug)} characters long, but it names the flow's "
                f"pgmq queue, which allows at most {MAX_FLOW_SLUG_LENGTH}"
            )
        options = FlowOptions(
            max_attempts=_check_int(where, "max_attempts", max_attempts, 1),
            base_delay=_check_int(where, "base_delay", base_delay, 1),
            timeout=_check_int(where, "timeout", timeout, 3),
        )
        object.__setattr__(self, "_slug", slug)
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_steps", ())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Flow is immutable; {name!r} cannot be set")

    def _with_step(self, step: StepDefinition) -> Flow[InputT]:
        clone: Flow[InputT] = object.__new__(type(self))
        object.__setattr__(clone, "_slug", self._slug)
        object.__setattr__(clone, "_options", self._options)
        object.__setattr__(clone, "_steps", (*self._steps, step))
        return clone

    # -- reading --------------------------------------------------------------------------

    @property
    def slug(self) -> str:
        """The flow slug (also the name of its pgmq queue)."""
        return self._slug

    @property
    def options(self) -> FlowOptions:
        """The flow-wide options as given."""
        return self._options

    @property
    def steps(self) -> tuple[StepDefinition, ...]:
        """The steps in definition order."""
        return self._steps

    @property
    def step_slugs(self) -> tuple[str, ...]:
        """The step slugs in definition order."""
        return tuple(s.slug for s in self._steps)

    def get_step(self, slug: str) -> StepDefinition:
        """The step with this slug (``KeyError`` naming the known ones otherwise)."""
        for step in self._steps:
            if step.slug == slug:
                return step
        raise KeyError(f"flow {self.slug!r} has no step {slug!r} (steps: {self._known()})")

    def dependents(self, slug: str) -> tuple[str, ...]:
        """Slugs of the steps that depend directly on ``slug``."""
        return tuple(s.slug for s in self._steps if slug in s.dependencies)

    def __iter__(self) -> Iterator[StepDefinition]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __repr__(self) -> str:
        return f"Flow({self.slug!r}, steps=[{', '.join(self.step_slugs)}])"

    def _known(self) -> str:
        return ", ".join(self.step_slugs) or "none yet"

    # -- building -------------------------------------------------------------------------

    @overload
    def step(
        self,
        slug: str,
        handler: Handler[InputT],
        *,
        depends_on: None = None,
        **options: Unpack[StepKeywords],
    ) -> Flow[InputT]: ...

    @overload
    def step(
        self,
        slug: str,
        handler: Handler[Any],
        *,
        depends_on: Sequence[str],
        **options: Unpack[StepKeywords],
    ) -> Flow[InputT]: ...

    def step(
        self,
        slug: str,
        handler: Handler[Any],
        *,
        depends_on: Sequence[str] | None = None,
        **options: Unpack[StepKeywords],
    ) -> Flow[InputT]:
        """A new flow with a single step appended.

        ``depends_on`` lists earlier steps whose outputs the handler receives as
        ``{slug: output}``; without it the handler receives the flow input. The other
        options are those of :class:`StepKeywords`.
        """
        _refuse_unknown("step", options)
        if isinstance(depends_on, str):
            raise FlowDefinitionError(
                f"flow {self.slug!r}, step {slug!r}: depends_on must be a list of step slugs, "
                f"got the string {depends_on!r} (did you mean [{depends_on!r}]?)"
            )
        return self._add(slug, handler, "single", tuple(depends_on or ()), options)

    @overload
    def map(
        self: Flow[list[E]],
        slug: str,
        handler: Handler[E],
        *,
        array: None = None,
        **options: Unpack[StepKeywords],
    ) -> Flow[list[E]]: ...

    @overload
    def map(
        self,
        slug: str,
        handler: Handler[Any],
        *,
        array: str,
        **options: Unpack[StepKeywords],
    ) -> Flow[InputT]: ...

    def map(
        self,
        slug: str,
        handler: Handler[Any],
        *,
        array: str | None = None,
        **options: Unpack[StepKeywords],
    ) -> Flow[Any]:
        """A new flow with a map step appended: one task per element of an array.

        ``array`` names the step whose output (an array) is mapped over; without it the
        step maps over the flow input, which must then be an array. The handler receives
        one element; the step's output is the array of the handler results, in order. The
        other options are those of :class:`StepKeywords`.
        """
        _refuse_unknown("map", options)
        if array is not None and not isinstance(array, str):
            raise FlowDefinitionError(
                f"flow {self.slug!r}, map step {slug!r}: array must be one step slug, got {array!r}"
            )
        return self._add(slug, handler, "map", (array,) if array is not None else (), options)

    def _add(
        self,
        slug: str,
        handler: Callable[..., Any],
        step_type: StepType,
        dependencies: tuple[str, ...],
        options: StepKeywords,
    ) -> Flow[InputT]:
        validate_slug(slug, f"flow {self.slug!r}: step slug")
        where = f"flow {self.slug!r}, step {slug!r}"
        if slug in self.step_slugs:
            raise FlowDefinitionError(f"{where}: a step with this slug is already defined")
        seen: set[str] = set()
        for dep in dependencies:
            if not isinstance(dep, str):
                raise FlowDefinitionError(f"{where}: dependencies must be step slugs, got {dep!r}")
            if dep == slug:
                raise FlowDefinitionError(f"{where}: a step cannot depend on itself")
            if dep in seen:
                raise FlowDefinitionError(f"{where}: dependency {dep!r} is listed twice")
            if dep not in self.step_slugs:
                raise FlowDefinitionError(
                    f"{where}: depends on unknown step {dep!r} "
                    f"(steps defined before it: {self._known()})"
                )
            seen.add(dep)
        step_options = StepOptions(
            max_attempts=_check_int(where, "max_attempts", options.get("max_attempts"), 1),
            base_delay=_check_int(where, "base_delay", options.get("base_delay"), 1),
            timeout=_check_int(where, "timeout", options.get("timeout"), 3),
            start_delay=_check_int(where, "start_delay", options.get("start_delay"), 0),
        )
        try:
            info = inspect_handler(handler)
        except HandlerError as exc:
            raise FlowDefinitionError(f"{where}: {exc}") from exc
        step = StepDefinition(
            slug=slug,
            handler=handler,
            info=info,
            step_type=step_type,
            dependencies=dependencies,
            options=step_options,
            required_input_pattern=_check_pattern(where, "if_", options.get("if_")),
            forbidden_input_pattern=_check_pattern(where, "if_not", options.get("if_not")),
            when_unmet=_check_mode(where, "when_unmet", options.get("when_unmet")),
            when_exhausted=_check_mode(where, "when_exhausted", options.get("when_exhausted")),
            index=len(self._steps),
        )
        self._check_handler_types(where, step)
        return self._with_step(step)

    def _check_handler_types(self, where: str, step: StepDefinition) -> None:
        """Compare the handler's annotated input with what its dependencies produce."""
        expected = step.info.input_annotation
        if step.step_type == "map":
            if step.is_root:
                return
            producer = self.get_step(step.dependencies[0])
            produced = element_type(producer.info.output_annotation)
            if incompatible(produced, expected):
                raise FlowDefinitionError(
                    f"{where}: the handler takes {describe(expected)} but step "
                    f"{producer.slug!r} produces elements of type {describe(produced)}"
                )
            return
        if step.is_root:
            return
        fields = object_fields(expected)
        if fields is None:
            return
        annotations, _required = fields
        unknown = sorted(set(annotations) - set(step.dependencies))
        if unknown:
            raise FlowDefinitionError(
                f"{where}: the handler's input type {describe(expected)} has field(s) "
                f"{', '.join(map(repr, unknown))} that are not dependencies of the step "
                f"(depends_on: {', '.join(step.dependencies)})"
            )
        for dep in step.dependencies:
            if dep not in annotations:
                continue
            produced = self.get_step(dep).info.output_annotation
            if self.get_step(dep).step_type == "map":
                continue  # a map's output is a list of its handler's results
            if incompatible(produced, annotations[dep]):
                raise FlowDefinitionError(
                    f"{where}: the handler expects {dep!r} to be {describe(annotations[dep])} "
                    f"but step {dep!r} produces {describe(produced)}"
                )
