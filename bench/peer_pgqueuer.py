"""PgQueuer, the peer anchor: runs inside bench/.venv-peer (it never imports pgweave).

    python bench/peer_pgqueuer.py install|enqueue|drain --host H --port P --user U --dbname D [...]

``enqueue`` prints one JSON line with the seconds the enqueue call took. ``drain`` follows the driver protocol of bench.procs: print ``ready``, wait for a line on
stdin, drain the queue with a no-op entrypoint (PgQueuer's drain mode exits once the queue
is empty), print one JSON line of statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any


async def _connect(args: argparse.Namespace) -> Any:
    import asyncpg  # type: ignore[import-not-found,unused-ignore]

    return await asyncpg.connect(
        host=args.host, port=args.port, user=args.user, database=args.dbname
    )


async def main_async(args: argparse.Namespace) -> None:
    from pgqueuer import PgQueuer, Queries  # type: ignore[import-not-found,unused-ignore]
    from pgqueuer.db import AsyncpgDriver  # type: ignore[import-not-found,unused-ignore]
    from pgqueuer.types import QueueExecutionMode  # type: ignore[import-not-found,unused-ignore]

    conn = await _connect(args)
    driver = AsyncpgDriver(conn)
    if args.command == "install":
        await Queries(driver).install()
        return
    if args.command == "enqueue":
        n = args.jobs
        started = time.perf_counter()
        await Queries(driver).enqueue(["noop"] * n, [None] * n, [0] * n)
        print(json.dumps({"enqueue_s": time.perf_counter() - started}), flush=True)
        return

    pgq = PgQueuer(driver)
    done = 0

    @pgq.entrypoint("noop")  # type: ignore[untyped-decorator,unused-ignore]
    async def noop(job: Any) -> None:
        nonlocal done
        done += 1

    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    cpu = time.process_time()
    await pgq.run(
        batch_size=args.batch,
        mode=QueueExecutionMode.drain,
        log_aggregation_interval=__import__("datetime").timedelta(0),
    )
    print(
        json.dumps(
            {
                "cpu_s": time.process_time() - cpu,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "completed": done,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["install", "enqueue", "drain"])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--batch", type=int, default=10)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
