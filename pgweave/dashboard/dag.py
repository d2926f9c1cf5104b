"""Lay a flow's DAG out for a server-side SVG: steps in columns by depth, edges as curves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NODE_WIDTH = 170
NODE_HEIGHT = 48
COLUMN_GAP = 60
ROW_GAP = 18
MARGIN = 10


@dataclass(frozen=True)
class Node:
    """A step's box: top-left corner in SVG units."""

    slug: str
    x: int
    y: int


@dataclass(frozen=True)
class Edge:
    """A dependency drawn as a cubic curve from the parent's right to the child's left."""

    parent: str
    child: str
    path: str


@dataclass(frozen=True)
class Layout:
    """Positioned nodes and edges and the drawing's size."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int


def depths(steps: Sequence[str], deps: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Each step's column: 0 for roots, else one more than its deepest parent. ``steps``
    come in definition order, in which parents always precede their children."""
    parents: dict[str, list[str]] = {step: [] for step in steps}
    for parent, child in deps:
        parents[child].append(parent)
    depth: dict[str, int] = {}
    for step in steps:
        depth[step] = 1 + max((depth[p] for p in parents[step]), default=-1)
    return depth


def layout(steps: Sequence[str], deps: Sequence[tuple[str, str]]) -> Layout:
    """Positions for the steps (in definition order) and their dependencies."""
    depth = depths(steps, deps)
    rows: dict[int, int] = {}
    nodes: dict[str, Node] = {}
    for step in steps:
        column = depth[step]
        row = rows.get(column, 0)
        rows[column] = row + 1
        nodes[step] = Node(
            step,
            MARGIN + column * (NODE_WIDTH + COLUMN_GAP),
            MARGIN + row * (NODE_HEIGHT + ROW_GAP),
        )
    edges = []
    for parent, child in deps:
        a, b = nodes[parent], nodes[child]
        x1, y1 = a.x + NODE_WIDTH, a.y + NODE_HEIGHT // 2
        x2, y2 = b.x, b.y + NODE_HEIGHT // 2
        bend = (x2 - x1) // 2
        edges.append(
            Edge(parent, child, f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}")
        )
    columns = 1 + max(depth.values(), default=0)
    height = max(rows.values(), default=1)
    return Layout(
        tuple(nodes.values()),
        tuple(edges),
        2 * MARGIN + columns * NODE_WIDTH + (columns - 1) * COLUMN_GAP,
        2 * MARGIN + height * NODE_HEIGHT + (height - 1) * ROW_GAP,
    )
