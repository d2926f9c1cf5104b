"""Load → validate → build the model → render every target; ``write``/``diff`` touch the disk."""

from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pgweave_generator.build import build_ir
from pgweave_generator.loader import load_spec
from pgweave_generator.migrations import migration_summaries, render_migrations
from pgweave_generator.render import GeneratedFile
from pgweave_generator.render.docs import render_docs
from pgweave_generator.render.python_client import render_python_client
from pgweave_generator.render.python_models import render_json_schema, render_models
from pgweave_generator.render.spec_schema import render_spec_schema
from pgweave_generator.targets import targets_of


def source_name(spec_file: Path, out_dir: Path) -> str:
    """How generated headers name the spec: relative to the project (the directory holding
    the output directory) when it lies inside, else by its file name alone, never by the
    machine's directory layout."""
    project = out_dir.resolve().parent
    try:
        return spec_file.resolve().relative_to(project).as_posix()
    except ValueError:
        return spec_file.name


def generate_files(spec_file: Path, out_dir: Path) -> list[GeneratedFile]:
    """Everything ``generated/`` should hold for this spec, sorted by path (pure, no writes)."""
    source = source_name(spec_file, out_dir)
    loaded = load_spec(spec_file)
    schema = build_ir(loaded)
    targets = targets_of(loaded.spec.settings)
    files = [
        *render_migrations(schema, source, out_dir),
        render_spec_schema(source),
        render_json_schema(schema, targets, source),
        render_models(schema, targets, source),
        *render_python_client(schema, targets, source),
    ]
    files.extend(render_docs(schema, targets, source, migration_summaries(schema, out_dir)))
    return sorted(files, key=lambda f: f.path)


@dataclass(frozen=True)
class Drift:
    """How the disk differs from what the spec produces."""

    changed: list[str]
    missing: list[str]
    stale: list[str]
    diff: str

    @property
    def clean(self) -> bool:
        """True when the disk matches exactly."""
        return not (self.changed or self.missing or self.stale)


def _existing(out_dir: Path) -> set[str]:
    if not out_dir.is_dir():
        return set()
    return {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()}


def diff(files: list[GeneratedFile], out_dir: Path) -> Drift:
    """Compare generated files with ``out_dir``: changed, missing and stale files, plus a diff."""
    wanted = {f.path: f.content for f in files}
    changed: list[str] = []
    missing: list[str] = []
    chunks: list[str] = []
    for path, content in sorted(wanted.items()):
        target = out_dir / path
        if not target.exists():
            missing.append(path)
            old = ""
        else:
            old = target.read_text(encoding="utf-8", errors="replace")
            if old == content:
                continue
            changed.append(path)
        chunks.extend(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                content.splitlines(keepends=True),
                fromfile=f"a/{path}",
                tofile=f"b/{path}",
            )
        )
    stale = sorted(_existing(out_dir) - set(wanted))
    for path in stale:
        chunks.append(
            f"--- a/{path}\n+++ /dev/null\n(stale file: the spec no longer produces it)\n"
        )
    return Drift(changed, missing, stale, "".join(chunks))


def write(files: list[GeneratedFile], out_dir: Path) -> Drift:
    """Bring ``out_dir`` in line with ``files``: atomic writes, stale files removed."""
    drift = diff(files, out_dir)
    for file in files:
        if file.path in drift.changed or file.path in drift.missing:
            _atomic_write(out_dir / file.path, file.content)
    for path in drift.stale:
        (out_dir / path).unlink()
    for directory in sorted((p for p in out_dir.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return drift


def _atomic_write(target: Path, content: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
