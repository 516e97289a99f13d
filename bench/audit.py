#!/usr/bin/env python3
"""Benchmark: what ``volimg audit`` costs on a cloud with many images.

    .venv/bin/python bench/audit.py [--images 5000] [--stamped 500] [--volumes 50]

Starts a sandbox (demo seed), puts ``--images`` images in it of which ``--stamped``
carry volimg's stamp (made from ``--volumes`` volumes of cirros-base, a tenth of
them missing one store copy), runs ``volimg audit --all-projects -f json`` as a real
process and prints the HTTP requests volimg sent, by service and method (the
sandbox's request log), the wall time, the findings and the peak RSS. Issue 8's
budget: fewer than 600 requests for 5,000 images of which 500 are volimg's.

A benchmark, not a test: it asserts nothing.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from volimg.provenance import TAG, Rule, Stamp, StampedBy, stamp_time  # noqa: E402
from volimg.sandbox import Sandbox, Timings  # noqa: E402
from volimg.sandbox.state import Image, new_id, now  # noqa: E402

ID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}|[0-9a-f]{32}")


def populate(sandbox: Sandbox, images: int, stamped: int, volumes: int) -> None:
    """Images straight into the sandbox's state (no API calls: this is the setup)."""
    cloud = sandbox.cloud
    base = cloud.find_image("cirros-base")
    project = cloud.find_project("admin").id
    volume_ids = sandbox.add_volumes(volumes, name_prefix="fleet", base_image="cirros-base")
    start = now() - timedelta(days=30)
    with cloud.lock:
        for number in range(images):
            made = start + timedelta(seconds=number)
            image = Image(
                id=new_id(),
                name=f"image-{number:05d}",
                owner=project,
                status="active",
                disk_format="raw",
                container_format="bare",
                size=1024,
                created_at=made,
                updated_at=made,
                locations=["fast"],
            )
            if number < stamped:
                volume_id = volume_ids[number % volumes]
                image.tags = [TAG]
                image.extra.update(
                    Stamp(
                        image_id=image.id,
                        stamped_by=StampedBy.UPLOAD,
                        stamped_at=stamp_time(made),
                        source_volume=volume_id,
                        base_image=base.id,
                        type_store=None,
                        rule=Rule.BASE_STORES,
                    ).properties()
                )
                image.locations = (
                    ["fast", "cheap"] if number % 10 == 0 else ["fast", "cheap", "archive"]
                )
            cloud.images[image.id] = image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--stamped", type=int, default=500)
    parser.add_argument("--volumes", type=int, default=50)
    args = parser.parse_args()
    with Sandbox(seed="demo", timings=Timings.instant()) as sandbox:
        populate(sandbox, args.images, args.stamped, args.volumes)
        before = len(sandbox.requests)
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(sandbox.clouds_yaml)}
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "volimg", "--os-cloud", sandbox.admin_cloud, "audit",
             "--all-projects", "-f", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        records = [r for r in list(sandbox.requests)[before:] if r.origin == "client"]
    doc = json.loads(out)
    by_method = Counter(f"{r.service} {r.method} {ID.sub('{id}', r.service_path)}" for r in records)
    print(f"{args.images} images, {args.stamped} stamped by volimg, from {args.volumes} volumes; "
          f"{os.cpu_count()} cores\n")  # fmt: skip
    print("| what | figure |")
    print("| --- | --- |")
    print(f"| exit code | {os.waitstatus_to_exitcode(status)} |")
    print(f"| HTTP requests | {len(records)} |")
    print(f"| wall time | {wall:.2f} s |")
    print(f"| peak RSS | {usage.ru_maxrss / 1024:.0f} MB |")
    print(f"| images audited | {doc['summary']['images']} |")
    counts = {k: v for k, v in doc["summary"]["counts"].items() if v}
    print(f"| findings | {counts} |")
    print("\nrequests by service and method:\n")
    for key, count in sorted(by_method.items()):
        print(f"- {key}: {count}")
    pages = [r for r in records if r.service_path == "/v2/images" and "tag" in r.query]
    print(f"\npages of the tag listing: {len(pages)}")


if __name__ == "__main__":
    main()
