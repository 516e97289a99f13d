#!/usr/bin/env python3
"""Benchmark: a batch of volumes on the sandbox at several concurrencies.

    .venv/bin/python bench/batch.py [--volumes 200] [--concurrency 1 8 32] [--quick]

For each concurrency it starts a fresh sandbox (simulated durations: a 1 s upload and
0.5 s per store copy, copies one store after another as Glance does, no executor
lag), adds the volumes (made from cirros-base, so each image lands in the default
store and is copied to two more), runs ``volimg upload --from-file ... --concurrency
N -f json`` as a real process and prints:

- wall time, and its ratio to the ideal: the total simulated work / N
  (N = the concurrency; the work of one volume is 1 s + 2 x 0.5 s);
- HTTP requests per volume that volimg sent (the sandbox's request log, the client's
  requests only; Cinder's own calls to Glance are not volimg's);
- the volimg process's peak RSS (``os.wait4``'s ru_maxrss).

A benchmark, not a test: it asserts nothing; it prints the table (Markdown).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from volimg.sandbox import Sandbox, Timings  # noqa: E402

UPLOAD_SECONDS = 1.0
COPY_SECONDS = 0.5
COPIES = 2  # cirros-base is in cheap and archive; the upload lands in fast


def run_one(volumes: int, concurrency: int, workdir: Path) -> dict[str, object]:
    timings = Timings(
        volume_create=0.0,
        volume_delete=0.0,
        upload=UPLOAD_SECONDS,
        store_copy=COPY_SECONDS,
        import_lag=0.0,
    )
    with Sandbox(seed="demo", timings=timings) as sandbox:
        ids = sandbox.add_volumes(volumes, name_prefix="bench", base_image="cirros-base")
        listing = workdir / f"volumes-{concurrency}.txt"
        listing.write_text("\n".join(ids) + "\n")
        before = len(sandbox.requests)
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(sandbox.clouds_yaml)}
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "volimg", "--os-cloud", sandbox.admin_cloud, "upload",
             "--from-file", str(listing), "--concurrency", str(concurrency), "-f", "json",
             "--timeout", "600"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=workdir,
        )  # fmt: skip
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        doc = json.loads(out)
        records = [r for r in list(sandbox.requests)[before:] if r.origin == "client"]
    per_method = Counter(f"{r.service} {r.method}" for r in records)
    ideal = volumes * (UPLOAD_SECONDS + COPIES * COPY_SECONDS) / concurrency
    return {
        "concurrency": concurrency,
        "exit": proc.returncode,
        "ok": doc["summary"]["counts"]["ok"],
        "wall": wall,
        "ideal": ideal,
        "requests_per_volume": len(records) / volumes,
        "per_method": {k: round(v / volumes, 2) for k, v in sorted(per_method.items())},
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--quick", action="store_true", help="20 volumes at 8 and 32 only")
    args = parser.parse_args()
    if args.quick:
        args.volumes, args.concurrency = 20, [8, 32]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for concurrency in args.concurrency:
            row = run_one(args.volumes, concurrency, Path(tmp))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"{args.volumes} volumes; simulated upload {UPLOAD_SECONDS:g} s, copy "
          f"{COPY_SECONDS:g} s per store x {COPIES}; {os.cpu_count()} cores\n")  # fmt: skip
    print(
        "| concurrency | exit | ok | wall (s) | ideal (s) | wall / ideal | requests per volume | peak RSS (MB) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['exit']} | {r['ok']} | {r['wall']:.1f} | {r['ideal']:.1f} "
            f"| {r['wall'] / r['ideal']:.2f} | {r['requests_per_volume']:.2f} "  # type: ignore[operator]
            f"| {r['peak_rss_mb']:.0f} |"
        )
    print("\nrequests per volume by service and method:\n")
    for r in rows:
        print(f"- concurrency {r['concurrency']}: {r['per_method']}")


if __name__ == "__main__":
    main()
