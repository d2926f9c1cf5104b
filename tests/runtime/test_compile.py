"""Compiling flows to SQL and to the shape pgflow._get_flow_shape reports."""

from __future__ import annotations

from typing import Any

from pgweave.compile import compile_migration, compile_statements, flow_shape, migration_filename
from pgweave.dsl import Flow


def h(value: Any) -> Any:
    return value


WEBSITE = (
    Flow[Any]("analyze_website", max_attempts=3, timeout=4)
    .step("website", h)
    .step("sentiment", h, depends_on=["website"], timeout=30, max_attempts=5)
    .step("summary", h, depends_on=["website"])
    .step("save", h, depends_on=["sentiment", "summary"])
)


def test_sql_has_options_only_when_set_in_definition_order() -> None:
    assert compile_statements(WEBSITE) == [
        "select pgflow.create_flow('analyze_website', max_attempts => 3, timeout => 4);",
        "select pgflow.add_step('analyze_website', 'website');",
        "select pgflow.add_step('analyze_website', 'sentiment', deps_slugs => array['website']::text[],"
        " max_attempts => 5, timeout => 30);",
        "select pgflow.add_step('analyze_website', 'summary', deps_slugs => array['website']::text[]);",
        "select pgflow.add_step('analyze_website', 'save',"
        " deps_slugs => array['sentiment', 'summary']::text[]);",
    ]


def test_sql_for_maps_conditions_and_modes() -> None:
    flow = (
        Flow[list[Any]]("m")
        .map("items", h, start_delay=0, base_delay=2)
        .step(
            "check",
            h,
            depends_on=["items"],
            if_={"items": [{"name": "O'Brien"}]},
            if_not={"x": None},
            when_unmet="fail",
            when_exhausted="skip-cascade",
        )
    )
    assert compile_statements(flow)[1:] == [
        "select pgflow.add_step('m', 'items', base_delay => 2, start_delay => 0, step_type => 'map');",
        "select pgflow.add_step('m', 'check', deps_slugs => array['items']::text[],"
        """ required_input_pattern => '{"items": [{"name": "O''Brien"}]}'::jsonb,"""
        """ forbidden_input_pattern => '{"x": null}'::jsonb,"""
        " when_unmet => 'fail', when_exhausted => 'skip-cascade');",
    ]


def test_shape_matches_get_flow_shape_format() -> None:
    flow = (
        Flow[Any]("s", timeout=10)
        .step("b", h)
        .step("a", h, start_delay=3)
        .map("c", h, array="a", if_={"k": 1}, when_exhausted="skip")
        .step("d", h, depends_on=["c", "b", "a"])
    )
    none = {"defined": False}
    assert flow_shape(flow) == {
        "steps": [
            {
                "slug": "b",
                "stepType": "single",
                "dependencies": [],
                "whenUnmet": "skip",
                "whenExhausted": "fail",
                "requiredInputPattern": none,
                "forbiddenInputPattern": none,
            },
            {
                "slug": "a",
                "stepType": "single",
                "dependencies": [],
                "whenUnmet": "skip",
                "whenExhausted": "fail",
                "requiredInputPattern": none,
                "forbiddenInputPattern": none,
            },
            {
                "slug": "c",
                "stepType": "map",
                "dependencies": ["a"],
                "whenUnmet": "skip",
                "whenExhausted": "skip",
                "requiredInputPattern": {"defined": True, "value": {"k": 1}},
                "forbiddenInputPattern": none,
            },
            {
                "slug": "d",
                "stepType": "single",
                "dependencies": ["a", "b", "c"],
                "whenUnmet": "skip",
                "whenExhausted": "fail",
                "requiredInputPattern": none,
                "forbiddenInputPattern": none,
            },
        ]
    }
    with_options = flow_shape(flow, with_options=True)
    assert with_options.get("options") == {"timeout": 10}
    assert [s.get("options") for s in with_options["steps"]] == [
        None,
        {"startDelay": 3},
        None,
        None,
    ]
    assert flow_shape(Flow[Any]("empty")) == {"steps": []}


def test_migration_file() -> None:
    text = compile_migration(WEBSITE, source="examples.website:flow")
    assert text.startswith(
        "-- Flow 'analyze_website', compiled by pgweave from examples.website:flow."
    )
    assert text.endswith("'save', deps_slugs => array['sentiment', 'summary']::text[]);\n")
    assert migration_filename(WEBSITE).endswith("_create_analyze_website_flow.sql")
