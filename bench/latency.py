"""``python -m bench.latency``: W6 alone (latency at low load), apart from the main run.

The same measurement as the main run's W6 (:func:`bench.runner.measure_latency`) on a
durable throwaway cluster (or ``--dsn``): one real worker, runs started one at a time;
prints start_flow → first task started and → run completed (p50 / p99 / max) as JSON.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from bench import PROJECT_ROOT
from bench.cluster import Server
from bench.runner import Options, measure_latency


def main(argv: list[str] | None = None) -> None:
    """Measure W6 ``--rounds`` times on one cluster and print each round's figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("--dsn", help="use this server instead of a throwaway durable cluster")
    parser.add_argument("--runs", type=int, default=200, help="runs per round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds on the same cluster")
    parser.add_argument("--poll-seconds", type=int, default=2, help="the worker's long poll")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    options = Options(
        ks=[1],
        drivers=["worker"],
        poll_seconds=args.poll_seconds,
        logs=PROJECT_ROOT / "bench" / "out" / "logs",
    )
    server = Server.start(args.dsn)
    try:
        server.prepare_template()
        for _ in range(args.rounds):
            print(json.dumps(measure_latency(server, args.runs, options)), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
