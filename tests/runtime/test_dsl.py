"""The flow DSL: immutability, validation with clear errors, handler introspection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

import pytest
from pydantic import BaseModel

from pgweave.dsl import Flow, FlowDefinitionError, StepContext


class Site(BaseModel):
    url: str


class Page(BaseModel):
    html: str


def fetch(site: Site) -> Page:
    return Page(html=f"<p>{site.url}</p>")


class SummaryInput(TypedDict):
    fetch: Page


def summarize(deps: SummaryInput) -> str:
    return deps["fetch"].html


def anything(value: Any) -> Any:
    return value


def with_context(value: Any, ctx: StepContext) -> str:
    return ctx.step_slug


async def async_handler(value: Any) -> int:
    return 1


def test_builder_is_immutable_and_keeps_definition_order() -> None:
    base = Flow[Site]("analyze", max_attempts=2)
    one = base.step("fetch", fetch)
    two = one.step("summary", summarize, depends_on=["fetch"])
    assert base.step_slugs == ()
    assert one.step_slugs == ("fetch",)
    assert two.step_slugs == ("fetch", "summary")
    assert [s.index for s in two.steps] == [0, 1]
    assert two.get_step("summary").dependencies == ("fetch",)
    assert two.dependents("fetch") == ("summary",)
    with pytest.raises(AttributeError, match="immutable"):
        two.slug = "other"  # type: ignore[misc]
    # branching from a shared prefix does not affect either branch
    branch = one.step("other", anything, depends_on=["fetch"])
    assert two.step_slugs == ("fetch", "summary")
    assert branch.step_slugs == ("fetch", "other")


def test_handler_introspection() -> None:
    flow = (
        Flow[Any]("f")
        .step("plain", anything)
        .step("ctx", with_context)
        .step("aio", async_handler)
        .step("lam", lambda x: x)
    )
    plain, ctx, aio, lam = flow.steps
    assert (plain.info.takes_context, plain.info.is_async) == (False, False)
    assert (ctx.info.takes_context, ctx.info.is_async) == (True, False)
    assert (aio.info.is_async, aio.info.output_annotation) == (True, int)
    assert lam.info.takes_context is False
    root = Flow[Site]("g").step("fetch", fetch).get_step("fetch")
    assert root.info.input_annotation is Site
    assert root.info.convert_input({"url": "u"}) == Site(url="u")


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("", "must not be empty"),
        ("1abc", "is invalid"),
        ("has-dash", "is invalid"),
        ("run", "is reserved"),
        ("x" * 129, "at most 128"),
    ],
)
def test_invalid_slugs(slug: str, message: str) -> None:
    with pytest.raises(FlowDefinitionError, match=message):
        Flow[Any](slug)
    with pytest.raises(FlowDefinitionError, match=message):
        Flow[Any]("ok").step(slug, anything)


def test_slug_of_max_length_is_accepted() -> None:
    """A step slug may have 128 characters; a flow slug, which names a pgmq queue, 47."""
    flow = Flow[Any]("a" * 47).step("b" * 128, anything)
    assert (flow.slug, flow.step_slugs) == ("a" * 47, ("b" * 128,))


def test_flow_slug_longer_than_a_pgmq_queue_name_is_refused() -> None:
    slug = "a" * 48
    with pytest.raises(FlowDefinitionError) as caught:
        Flow[Any](slug)
    assert str(caught.value) == (
        f"flow {slug!r}: the slug is 48 characters long, but it names the flow's pgmq queue,"
        " which allows at most 47"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be >= 1, got 0"),
        ({"base_delay": 0}, "base_delay must be >= 1, got 0"),
        ({"timeout": 2}, "timeout must be >= 3, got 2"),
        ({"max_attempts": True}, "max_attempts must be an integer"),
        ({"timeout": 1.5}, "timeout must be an integer"),
    ],
)
def test_invalid_flow_and_step_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(FlowDefinitionError, match=message):
        Flow[Any]("f", **options)
    with pytest.raises(FlowDefinitionError, match=f"step 's': {message}"):
        Flow[Any]("f").step("s", anything, **options)


def test_start_delay_and_minimums() -> None:
    with pytest.raises(FlowDefinitionError, match="start_delay must be >= 0, got -1"):
        Flow[Any]("f").step("s", anything, start_delay=-1)
    step = (
        Flow[Any]("f")
        .step("s", anything, start_delay=0, max_attempts=1, base_delay=1, timeout=3)
        .get_step("s")
    )
    assert (step.options.start_delay, step.options.timeout) == (0, 3)


def test_dependency_errors() -> None:
    flow = Flow[Any]("f").step("a", anything)
    with pytest.raises(
        FlowDefinitionError, match=r"depends on unknown step 'b'.*defined before it: a"
    ):
        flow.step("c", anything, depends_on=["b"])
    with pytest.raises(FlowDefinitionError, match="'a' is listed twice"):
        flow.step("c", anything, depends_on=["a", "a"])
    with pytest.raises(FlowDefinitionError, match="cannot depend on itself"):
        flow.step("c", anything, depends_on=["c"])
    with pytest.raises(FlowDefinitionError, match="already defined"):
        flow.step("a", anything)
    with pytest.raises(FlowDefinitionError, match="did you mean"):
        flow.step("c", anything, depends_on="a")
    with pytest.raises(FlowDefinitionError, match="unknown step 'zz'"):
        flow.map("m", anything, array="zz")


def test_conditions_and_modes_validation() -> None:
    flow = Flow[Any]("f")
    with pytest.raises(FlowDefinitionError, match="if_ must be a JSON object"):
        flow.step("s", anything, if_=[1, 2])  # type: ignore[call-overload]
    with pytest.raises(FlowDefinitionError, match="if_not is not JSON-serialisable"):
        flow.step("s", anything, if_not={"x": object()})
    with pytest.raises(FlowDefinitionError, match="when_unmet must be one of fail, skip"):
        flow.step("s", anything, when_unmet="ignore")  # type: ignore[call-overload]
    with pytest.raises(FlowDefinitionError, match="when_exhausted must be one of"):
        flow.step("s", anything, when_exhausted="retry")  # type: ignore[call-overload]
    step = flow.step(
        "s",
        anything,
        if_={"status": "active"},
        if_not={"banned": True},
        when_unmet="skip-cascade",
        when_exhausted="skip",
    ).get_step("s")
    assert step.required_input_pattern == {"status": "active"}
    assert step.forbidden_input_pattern == {"banned": True}
    assert (step.when_unmet, step.when_exhausted) == ("skip-cascade", "skip")
    default = flow.step("t", anything).get_step("t")
    assert (default.effective_when_unmet, default.effective_when_exhausted) == ("skip", "fail")


def test_unusable_handlers_are_rejected() -> None:
    def no_args() -> None:
        pass

    def three(a: Any, b: Any, c: Any) -> None:
        pass

    def kw_only(a: Any, *, b: Any) -> None:
        pass

    with pytest.raises(FlowDefinitionError, match="takes no arguments"):
        Flow[Any]("f").step("s", no_args)  # type: ignore[arg-type]
    with pytest.raises(FlowDefinitionError, match="requires 3 arguments"):
        Flow[Any]("f").step("s", three)  # type: ignore[arg-type]
    with pytest.raises(FlowDefinitionError, match="keyword-only"):
        Flow[Any]("f").step("s", kw_only)  # type: ignore[arg-type]
    with pytest.raises(FlowDefinitionError, match="must be callable"):
        Flow[Any]("f").step("s", 42)  # type: ignore[call-overload]


def test_map_steps() -> None:
    def split(text: str) -> list[str]:
        return text.split()

    def length(word: str) -> int:
        return len(word)

    flow = Flow[str]("words").step("split", split).map("lengths", length, array="split")
    lengths = flow.get_step("lengths")
    assert (lengths.step_type, lengths.dependencies) == ("map", ("split",))
    root = Flow[list[int]]("nums").map("double", lambda n: n * 2)
    assert root.get_step("double").is_root


def test_dependency_types_are_checked_where_annotations_allow() -> None:
    class WrongInput(TypedDict):
        other: Page

    with pytest.raises(FlowDefinitionError, match=r"field.*'other'.*not dependencies"):
        Flow[Site]("f").step("fetch", fetch).step("s", lambda d: d, depends_on=["fetch"]).step(
            "t", _typed(WrongInput), depends_on=["fetch"]
        )

    class WrongType(TypedDict):
        fetch: int

    with pytest.raises(
        FlowDefinitionError, match="expects 'fetch' to be int but step 'fetch' produces Page"
    ):
        Flow[Site]("f").step("fetch", fetch).step("t", _typed(WrongType), depends_on=["fetch"])

    def count(n: int) -> int:
        return n

    with pytest.raises(
        FlowDefinitionError, match="takes int but step 'split' produces elements of type str"
    ):
        Flow[Any]("f").step("split", _returns_words).map("count", count, array="split")

    # a model or dataclass as the dependent input is checked the same way
    @dataclass
    class Deps:
        fetch: Page

    ok = Flow[Site]("f").step("fetch", fetch).step("d", _typed(Deps), depends_on=["fetch"])
    assert ok.step_slugs == ("fetch", "d")
    assert Flow[Site]("f").step("fetch", fetch).step("s", summarize, depends_on=["fetch"])


def _typed(annotation: Any) -> Any:
    def handler(deps: Any) -> Any:
        return deps

    handler.__annotations__ = {"deps": annotation, "return": Any}
    return handler


def _returns_words(text: Any) -> list[str]:
    return [text]


def test_callable_objects_partials_and_methods_are_handlers() -> None:
    import functools

    class Scaler:
        def __init__(self, factor: int) -> None:
            self.factor = factor

        def __call__(self, value: int) -> int:
            return value * self.factor

        async def scale(self, value: int, ctx: StepContext) -> int:
            return value * self.factor

    def add(offset: int, value: int) -> int:
        return value + offset

    flow = (
        Flow[int]("callables")
        .step("obj", Scaler(2))
        .step("method", Scaler(3).scale)
        .step("partial", functools.partial(add, 1))
    )
    obj, method, partial = (s.info for s in flow.steps)
    assert (obj.input_annotation, obj.takes_context, obj.is_async) == (int, False, False)
    assert (method.takes_context, method.is_async) == (True, True)
    assert (partial.takes_context, partial.is_async) == (False, False)
    assert obj.convert_input("4") == 4
