#!/usr/bin/env python3
"""Benchmark: what one ``volimg doctor`` run costs on a large project.

    .venv/bin/python bench/doctor.py [--volumes 500] [--stamped 500] [--locked 20]

Starts a sandbox (demo seed, with unified limits on and a second region whose
glance-api knows fewer stores, so every read the doctor can make is made), adds
``--volumes`` volumes of cirros-base and ``--stamped`` volimg-stamped images, of which
``--locked`` hold an import lock, runs ``volimg doctor -f json`` as a real process and
prints the HTTP requests it sent, by service, method and path (the sandbox's request
log), beside the same run on the demo seed alone. Issue 21's budget: a bounded number
of requests, none per volume or per image.

A benchmark, not a test: it asserts nothing (tests/scenarios/test_doctor.py pins the
count).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from volimg.provenance import TAG, Rule, Stamp, StampedBy, stamp_time  # noqa: E402
from volimg.sandbox import Sandbox, Timings  # noqa: E402
from volimg.sandbox.state import Image, ImportTask, new_id, now  # noqa: E402

ID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}|[0-9a-f]{32}")
LIMITS = {"image_size_total": 1_000_000, "image_stage_total": 100_000, "image_count_total": 10_000}


def populate(sandbox: Sandbox, volumes: int, stamped: int, locked: int) -> None:
    """Volumes and images straight into the sandbox's state (no API calls: the setup)."""
    cloud = sandbox.cloud
    base = cloud.find_image("cirros-base")
    project = cloud.find_project("admin").id
    volume_ids = sandbox.add_volumes(volumes, name_prefix="fleet", base_image="cirros-base")
    start = now() - timedelta(days=30)
    with cloud.lock:
        for number in range(stamped):
            made = start + timedelta(seconds=number)
            image = Image(
                id=new_id(),
                name=f"fleet-image-{number:05d}",
                owner=project,
                status="active",
                disk_format="raw",
                container_format="bare",
                size=1024,
                tags=[TAG],
                created_at=made,
                updated_at=made,
                locations=["fast", "cheap", "archive"],
            )
            image.extra.update(
                Stamp(
                    image_id=image.id,
                    stamped_by=StampedBy.UPLOAD,
                    stamped_at=stamp_time(made),
                    source_volume=volume_ids[number % max(1, volumes)] if volumes else None,
                    base_image=base.id,
                    type_store=None,
                    rule=Rule.BASE_STORES,
                ).properties()
            )
            if number < locked:  # a copy whose worker died an hour ago
                task = ImportTask(
                    id=new_id(),
                    image_id=image.id,
                    owner=project,
                    user_id=None,
                    request_id=f"req-{new_id()}",
                    input={"backend": ["archive"]},
                    status="processing",
                    created_at=made,
                    updated_at=made,
                )
                cloud.tasks[task.id] = task
                image.extra["os_glance_import_task"] = task.id
            cloud.images[image.id] = image


def measure(sandbox: Sandbox) -> tuple[dict[str, Any], list[Any], float, int]:
    before = len(sandbox.requests)
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(sandbox.clouds_yaml)}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "volimg", "--os-cloud", sandbox.admin_cloud, "doctor", "-f", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    out = proc.stdout.read()
    code = proc.wait()
    wall = time.monotonic() - started
    records = [r for r in list(sandbox.requests)[before:] if r.origin == "client"]
    return json.loads(out), records, wall, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", type=int, default=500)
    parser.add_argument("--stamped", type=int, default=500)
    parser.add_argument("--locked", type=int, default=20)
    args = parser.parse_args()
    knobs: dict[str, Any] = {"glance_limits": LIMITS, "image_regions": {"RegionTwo": ("fast",)}}
    results = {}
    for label, grow in (("demo seed", False), ("large project", True)):
        with Sandbox(seed="demo", timings=Timings.instant(), **knobs) as sandbox:
            if grow:
                populate(sandbox, args.volumes, args.stamped, args.locked)
            volumes = len(sandbox.cloud.volumes)
            images = len(sandbox.cloud.images)
            results[label] = (volumes, images, *measure(sandbox))
    print(
        f"volimg doctor as the admin; large project: {args.volumes} more volumes, "
        f"{args.stamped} stamped images of which {args.locked} hold a stale import lock; "
        f"{os.cpu_count()} cores\n"
    )
    print("| project | volumes | images | exit | HTTP requests | wall time |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, (volumes, images, _doc, records, wall, code) in results.items():
        print(f"| {label} | {volumes} | {images} | {code} | {len(records)} | {wall:.2f} s |")
    keys = {
        label: Counter(f"{r.service} {r.method} {ID.sub('{id}', r.service_path)}" for r in records)
        for label, (_v, _i, _d, records, _w, _c) in results.items()
    }
    print("\n| service, method, path | " + " | ".join(keys) + " |")
    print("| --- |" + " --- |" * len(keys))
    for key in sorted(set().union(*keys.values())):
        print(f"| `{key}` | " + " | ".join(str(k.get(key, 0)) for k in keys.values()) + " |")
    doc = results["large project"][2]
    counts = doc["counts"]
    print(f"\nrows of the large project's report: {counts}")


if __name__ == "__main__":
    main()
