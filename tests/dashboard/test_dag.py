"""The DAG layout: columns by longest path, rows in definition order, edges between boxes."""

from __future__ import annotations

from pgweave.dashboard import dag


def test_columns_follow_the_longest_path() -> None:
    steps = ["a", "b", "c", "d", "e"]
    deps = [("a", "b"), ("b", "c"), ("a", "d"), ("c", "e"), ("d", "e")]
    assert dag.depths(steps, deps) == {"a": 0, "b": 1, "c": 2, "d": 1, "e": 3}


def test_layout_positions_and_size() -> None:
    out = dag.layout(["a", "b", "c"], [("a", "b"), ("a", "c")])
    nodes = {n.slug: (n.x, n.y) for n in out.nodes}
    step_x = dag.NODE_WIDTH + dag.COLUMN_GAP
    step_y = dag.NODE_HEIGHT + dag.ROW_GAP
    assert nodes == {
        "a": (dag.MARGIN, dag.MARGIN),
        "b": (dag.MARGIN + step_x, dag.MARGIN),
        "c": (dag.MARGIN + step_x, dag.MARGIN + step_y),
    }
    assert out.width == 2 * dag.MARGIN + 2 * dag.NODE_WIDTH + dag.COLUMN_GAP
    assert out.height == 2 * dag.MARGIN + 2 * dag.NODE_HEIGHT + dag.ROW_GAP
    (ab, ac) = out.edges
    assert ab.path.startswith(
        f"M{dag.MARGIN + dag.NODE_WIDTH},{dag.MARGIN + dag.NODE_HEIGHT // 2} "
    )
    assert ac.path.endswith(f" {dag.MARGIN + step_x},{dag.MARGIN + step_y + dag.NODE_HEIGHT // 2}")


def test_a_flow_without_steps_has_an_empty_drawing() -> None:
    out = dag.layout([], [])
    assert out.nodes == ()
    assert out.edges == ()
