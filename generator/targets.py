"""How the generated client and docs are named: from the spec's settings, with defaults.

Kept apart from the IR on purpose: these names shape files, not the database, so they are
not recorded in migration snapshots and changing them never needs a migration.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgweave_generator.render.python_models import camel
from pgweave_generator.spec_model import Settings


@dataclass(frozen=True)
class Targets:
    """The names the Python and docs targets use."""

    python_package: str
    class_prefix: str
    docs_title: str

    @property
    def package_dir(self) -> str:
        """Where the client package lives under the output directory."""
        return f"python/{self.python_package}"

    @property
    def client_class(self) -> str:
        """``Pgflow`` → ``PgflowClient``."""
        return f"{self.class_prefix}Client"

    @property
    def async_client_class(self) -> str:
        """``Pgflow`` → ``AsyncPgflowClient``."""
        return f"Async{self.class_prefix}Client"

    @property
    def base_error_class(self) -> str:
        """``Pgflow`` → ``PgflowError``."""
        return f"{self.class_prefix}Error"


def targets_of(settings: Settings) -> Targets:
    """The spec's names, defaulting to ``<schema>_client``, ``<Schema>`` and ``<schema> reference``."""
    schema = settings.schema_name
    return Targets(
        python_package=settings.python_package or f"{schema}_client",
        class_prefix=settings.class_prefix or camel(schema),
        docs_title=settings.docs_title or f"{schema} reference",
    )
