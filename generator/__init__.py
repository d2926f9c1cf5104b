"""The generator: spec → validated model → intermediate model → generated files."""
