"""The documented errors come back as the generated exceptions, with sqlstate, details and cause."""

from __future__ import annotations

import uuid

import psycopg
import psycopg.errors
import pytest

from pgweave_client import ConstraintViolationError, EngineError, PgflowError, errors
from tests.client.conftest import RecordingClient


def test_constraint_violation_maps_by_constraint_name(client: RecordingClient) -> None:
    with pytest.raises(errors.FlowNotFoundError) as caught:
        client.start_flow("nowhere", {})
    error = caught.value
    assert isinstance(error, ConstraintViolationError)
    assert isinstance(error, PgflowError)
    assert (error.sqlstate, error.constraint) == ("23503", "runs_flow_slug_fkey")
    assert isinstance(error.__cause__, psycopg.errors.ForeignKeyViolation)
    assert 'violates foreign key constraint "runs_flow_slug_fkey"' in error.message
    # the connection (or the pool's) is usable after the error
    assert client.is_valid_slug("nowhere") is True


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ({"step_slug": "bad-slug"}, errors.InvalidStepSlugError),
        ({"step_slug": "b", "step_type": "fan"}, errors.InvalidStepTypeError),
        ({"step_slug": "b", "when_unmet": "shrug"}, errors.InvalidWhenUnmetError),
        ({"step_slug": "b", "when_exhausted": "retry"}, errors.InvalidWhenExhaustedError),
        (
            {"step_slug": "b", "required_input_pattern": [1]},
            errors.RequiredInputPatternNotObjectError,
        ),
        (
            {"step_slug": "b", "forbidden_input_pattern": "x"},
            errors.ForbiddenInputPatternNotObjectError,
        ),
        ({"step_slug": "b", "start_delay": -1}, errors.NegativeStartDelayError),
        ({"step_slug": "b", "timeout": 0}, errors.NonpositiveTimeoutError),
        ({"step_slug": "b", "deps_slugs": ["ghost"]}, errors.DependencyNotFoundError),
        ({"step_slug": "b", "deps_slugs": ["b"]}, errors.SelfDependencyError),
    ],
)
def test_add_step_constraint_errors(
    client: RecordingClient, step: dict[str, object], expected: type[PgflowError]
) -> None:
    client.create_flow("shop")
    client.add_step("shop", "a")
    with pytest.raises(expected) as caught:
        client.add_step("shop", **step)  # type: ignore[arg-type]
    assert isinstance(caught.value, ConstraintViolationError)
    assert caught.value.sqlstate == expected.SQLSTATE


def test_add_step_to_a_missing_flow(client: RecordingClient) -> None:
    with pytest.raises(errors.FlowNotFoundForStepError) as caught:
        client.add_step("ghost_flow", "a")
    assert caught.value.constraint == "steps_flow_slug_fkey"


def test_invalid_flow_slug(client: RecordingClient) -> None:
    with pytest.raises(errors.InvalidFlowSlugError) as caught:
        client.create_flow("run")
    assert caught.value.sqlstate == "23514"


def test_engine_error_exposes_the_message_parts(client: RecordingClient) -> None:
    client.create_flow("fan")
    client.add_step("fan", "a")
    client.add_step("fan", "b")
    with pytest.raises(errors.MapStepTooManyDependenciesError) as caught:
        client.add_step("fan", "c", ["a", "b"], step_type="map")
    error = caught.value
    assert isinstance(error, EngineError)
    assert error.sqlstate == "P0001"
    assert error.params == {"step_slug": "c", "count": "2", "deps": "a, b"}
    assert (
        error.message == 'Map step "c" can have at most one dependency, but 2 were provided: a, b'
    )
    assert isinstance(error.__cause__, psycopg.errors.RaiseException)


def test_root_map_input_errors(client: RecordingClient) -> None:
    client.create_flow("batch")
    client.add_step("batch", "each", step_type="map")
    with pytest.raises(errors.RootMapInputNotArrayError) as not_array:
        client.start_flow("batch", {"items": []})
    assert not_array.value.params == {"flow_slug": "batch", "jsonb_type": "object"}
    with pytest.raises(errors.RootMapInputNullError) as null:
        client.start_flow("batch", None)  # None is SQL NULL
    assert null.value.params == {"flow_slug": "batch"}
    [run] = client.start_flow("batch", [1, 2, 3])
    assert run.remaining_steps == 1


def test_queue_missing_is_pgmqs_own_error(client: RecordingClient) -> None:
    client.create_flow("lost")
    client.add_step("lost", "a")
    with client.connection() as conn:
        conn.execute("select pgmq.drop_queue('lost')")
    with pytest.raises(errors.QueueMissingError) as caught:
        client.start_flow("lost", {})
    assert caught.value.sqlstate == "42P01"
    assert caught.value.params == {"queue_name": "lost"}


def test_undocumented_errors_propagate_unchanged(client: RecordingClient) -> None:
    client.create_flow("plain")
    client.add_step("plain", "a")
    # a NULL input without root maps violates runs.input NOT NULL: not a documented error
    with pytest.raises(psycopg.errors.NotNullViolation) as caught:
        client.start_flow("plain", None)
    assert not isinstance(caught.value, PgflowError)


def test_translate_prefers_the_declared_errors() -> None:
    assert errors.ERRORS
    assert len({e.__name__ for e in errors.ERRORS}) == len(errors.ERRORS)
    for error in errors.ERRORS:
        assert error.SQLSTATE
        assert issubclass(error, ConstraintViolationError | EngineError)
    assert errors.RunNotFoundError.PATTERN.match(f"Run not found: {uuid.UUID(int=1)}")
    assert not errors.RunNotFoundError.PATTERN.match("Run not found")
