#!/usr/bin/env python3
"""Benchmark: a batch of volumes on the sandbox, by concurrency and --max-copies.

    .venv/bin/python bench/batch.py [--volumes 100] [--concurrency 1 4 32 64]
                                    [--fleet 1000] [--quick] [--write]

For each concurrency it starts a fresh sandbox (simulated durations: a 1 s upload and
0.5 s per store copy, copies one store after another as Glance does, no executor lag),
adds the volumes (made from cirros-base, so each image lands in the default store and
is copied to two more), runs ``volimg upload --from-file ... --concurrency N -f json``
as a real process, with the default ``--max-copies`` and with ``--max-copies 0`` (no
cap; only where the concurrency exceeds the cap: below it the two are the same run),
and prints:

- wall time, and its ratio to the ideal: the total simulated work / N, or the copy
  work / the cap when copies are the narrower pipe;
- HTTP requests per volume that volimg sent (the sandbox's request log, the client's
  requests only; Cinder's own calls to Glance are not volimg's), by kind;
- the volimg process's peak RSS (``os.wait4``'s ru_maxrss).

Then one fleet run of ``--fleet`` volumes at concurrency 64 with shorter simulated
durations (0.2 s upload, 0.1 s per store copy): its requests per volume and peak RSS.

A benchmark, not a test: it asserts nothing. ``--write`` puts the tables into
docs/performance.md between the ``batch-bench`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from volimg.copy_slots import DEFAULT_MAX_COPIES  # noqa: E402
from volimg.sandbox import Sandbox, Timings  # noqa: E402

UPLOAD_SECONDS = 1.0
COPY_SECONDS = 0.5
COPIES = 2  # cirros-base is in cheap and archive; the upload lands in fast
FLEET_UPLOAD, FLEET_COPY, FLEET_CONCURRENCY = 0.2, 0.1, 64
DOC = ROOT / "docs" / "performance.md"
BEGIN = "<!-- batch-bench:begin (written by bench/batch.py --write) -->"
END = "<!-- batch-bench:end -->"
_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f-]{36}")


def kind(record: object) -> str:
    """A request's kind: service, method, path with IDs folded, Cinder's action."""
    path = _ID.sub("{id}", record.service_path)  # type: ignore[attr-defined]
    body = record.json  # type: ignore[attr-defined]
    action = f" {next(iter(body))}" if isinstance(body, dict) and path.endswith("/action") else ""
    return f"{record.service} {record.method} {path}{action}"  # type: ignore[attr-defined]


def run_one(
    volumes: int,
    concurrency: int,
    max_copies: int,
    workdir: Path,
    *,
    upload: float = UPLOAD_SECONDS,
    copy: float = COPY_SECONDS,
) -> dict[str, object]:
    timings = Timings(
        volume_create=0.0, volume_delete=0.0, upload=upload, store_copy=copy, import_lag=0.0
    )
    with Sandbox(seed="demo", timings=timings) as sandbox:
        ids = sandbox.add_volumes(volumes, name_prefix="bench", base_image="cirros-base")
        listing = workdir / f"volumes-{concurrency}-{max_copies}.txt"
        listing.write_text("\n".join(ids) + "\n")
        before = len(sandbox.requests)
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(sandbox.clouds_yaml)}
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "volimg", "--os-cloud", sandbox.admin_cloud, "upload",
             "--from-file", str(listing), "--concurrency", str(concurrency),
             "--max-copies", str(max_copies), "-f", "json", "--timeout", "3600"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=workdir,
        )  # fmt: skip
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        doc = json.loads(out)
        records = [r for r in list(sandbox.requests)[before:] if r.origin == "client"]
    by_kind = Counter(kind(r) for r in records)
    work = volumes * (upload + COPIES * copy) / concurrency
    copy_work = volumes * COPIES * copy / max_copies if max_copies else 0.0
    return {
        "concurrency": concurrency,
        "max_copies": max_copies,
        "volumes": volumes,
        "exit": proc.returncode,
        "ok": doc["summary"]["counts"]["ok"],
        "wall": wall,
        "ideal": max(work, copy_work),
        "requests_per_volume": len(records) / volumes,
        "by_kind": {k: round(v / volumes, 2) for k, v in sorted(by_kind.items())},
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def render(rows: list[dict[str, object]], fleet: dict[str, object] | None, volumes: int) -> str:
    lines = [
        f"{volumes} volumes; simulated upload {UPLOAD_SECONDS:g} s, copy {COPY_SECONDS:g} s "
        f"per store x {COPIES}; {os.cpu_count()} cores; the default --max-copies is "
        f"{DEFAULT_MAX_COPIES}",
        "",
        "| concurrency | --max-copies | exit | ok | wall (s) | ideal (s) | wall / ideal "
        "| requests per volume | peak RSS (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cap = r["max_copies"] or "0 (no cap)"
        lines.append(
            f"| {r['concurrency']} | {cap} | {r['exit']} | {r['ok']} | {r['wall']:.1f} "
            f"| {r['ideal']:.1f} | {r['wall'] / r['ideal']:.2f} "  # type: ignore[operator]
            f"| {r['requests_per_volume']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    lines += ["", "Requests per volume by kind:", ""]
    for r in rows:
        lines.append(f"- concurrency {r['concurrency']}, --max-copies {r['max_copies']}:")
        for name, per_volume in r["by_kind"].items():  # type: ignore[attr-defined]
            lines.append(f"  - `{name}`: {per_volume}")
    if fleet is not None:
        lines += [
            "",
            f"A fleet of {fleet['volumes']} volumes at concurrency {fleet['concurrency']} "
            f"(default --max-copies; simulated upload {FLEET_UPLOAD:g} s, copy "
            f"{FLEET_COPY:g} s per store): exit {fleet['exit']}, {fleet['ok']} ok, "
            f"{fleet['requests_per_volume']:.2f} requests per volume, peak RSS "
            f"{fleet['peak_rss_mb']:.0f} MB, {fleet['wall']:.1f} s "
            f"(ideal {fleet['ideal']:.1f} s).",
        ]
    return "\n".join(lines) + "\n"


def write(text: str, command: str) -> None:
    doc = DOC.read_text()
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    body = f"Measured {when} by `{command}` (load average at the end {load}).\n\n{text}"
    DOC.write_text(f"{head}{BEGIN}\n{body}{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", type=int, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 32, 64])
    parser.add_argument("--fleet", type=int, default=1000, help="0: no fleet run")
    parser.add_argument("--quick", action="store_true", help="20 volumes at 4 and 32, no fleet")
    parser.add_argument("--write", action="store_true", help="write into docs/performance.md")
    args = parser.parse_args()
    if args.quick:
        args.volumes, args.concurrency, args.fleet = 20, [4, 32], 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for concurrency in args.concurrency:
            caps = (
                [DEFAULT_MAX_COPIES, 0]
                if concurrency > DEFAULT_MAX_COPIES
                else [DEFAULT_MAX_COPIES]
            )
            for cap in caps:
                row = run_one(args.volumes, concurrency, cap, Path(tmp))
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        fleet = None
        if args.fleet:
            fleet = run_one(
                args.fleet,
                FLEET_CONCURRENCY,
                DEFAULT_MAX_COPIES,
                Path(tmp),
                upload=FLEET_UPLOAD,
                copy=FLEET_COPY,
            )
            print(json.dumps(fleet), file=sys.stderr, flush=True)
    text = render(rows, fleet, args.volumes)
    print(text)
    if args.write:
        write(text, "python3 bench/batch.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
