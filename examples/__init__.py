"""Example flows for pgweave, runnable end to end with local stand-in handlers (no network)."""
