#!/usr/bin/env python3
"""Measure what volimg's Glance filter adds to a volume upload, on the real test stack.

Uploads one small volume (1 GiB, made from the seeded ``cirros-base``, as qcow2) through
Cinder again and again, with the filter on and with ``enabled = false``, alternating
blocks so that drift hits both alike (``stack.py up --glance-filter on|off`` restarts
Glance when the setting changes; the first uploads after a restart are warm-up and not
counted). Per upload it records:

- Glance's own time for ``PUT /v2/images/<id>/file`` (uWSGI's request log, "in N msecs"),
  which includes the filter's stamp when it is on;
- the whole upload as a client sees it: from Cinder's 202 to the image ``active`` and
  the volume ``available`` again.

Each upload is also checked: stamped by the filter when it is on, not stamped when off.

Usage (volimg's venv has openstacksdk; the stack must be up)::

    .venv/bin/python bench/glance_filter.py --state .realcloud [--port-base 25000] [--uploads 24]

It leaves the filter on and deletes the images it made.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "tests" / "realcloud" / "stack.py"
WARMUP = 2  # uploads after each restart, not counted (each uWSGI worker loads Glance)


def stack_up(state: Path, port_base: int, mode: str) -> None:
    subprocess.run(
        [
            sys.executable,
            str(STACK),
            "up",
            "--state",
            str(state),
            "--port-base",
            str(port_base),
            "--glance-filter",
            mode,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def put_msecs(log: Path, image_id: str) -> int:
    """Glance's time for the data upload of one image, from uWSGI's request log."""
    pattern = re.compile(
        rf"PUT /v2/images/{image_id}/file => generated \d+ bytes in (\d+) msecs \(HTTP/1.1 204\)"
    )
    for _ in range(40):
        found = pattern.findall(log.read_text(errors="replace"))
        if found:
            return int(found[-1])
        time.sleep(0.05)
    raise RuntimeError(f"no PUT line for {image_id} in {log}")


def upload_once(conn: Any, volume: Any, index: int, filter_on: bool) -> tuple[str, float]:
    started = time.perf_counter()
    answer = conn.block_storage.upload_volume_to_image(
        volume, f"bench-filter-{index}", disk_format="qcow2", container_format="bare"
    )
    image_id = str(answer["image_id"])
    while True:
        # The volume first: the image is active a few ms before the filter stamps it.
        vol = conn.block_storage.get_volume(volume.id)
        image = conn.image.get_image(image_id)
        if image.status == "active" and vol.status == "available":
            seconds = time.perf_counter() - started
            stamped = image.properties.get("volimg_stamped_by") == "glance-filter"
            if stamped != filter_on:  # the mode really is what we think it is
                raise RuntimeError(f"filter {'on' if filter_on else 'off'}, stamp: {stamped}")
            return image_id, seconds
        if image.status in ("killed", "deleted") or vol.status == "error":
            raise RuntimeError(f"upload {image_id} failed: {image.status} / {vol.status}")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--port-base", type=int, default=25000)
    parser.add_argument("--uploads", type=int, default=24, help="counted uploads per mode")
    parser.add_argument("--blocks", type=int, default=2, help="blocks per mode, alternating")
    args = parser.parse_args()
    state = args.state.resolve()

    import openstack

    info = json.loads((state / "stack.json").read_text())
    os.environ["OS_CLIENT_CONFIG_FILE"] = info["clouds_yaml"]
    log = Path(info["logs"]) / "glance.log"
    per_block = -(-args.uploads // args.blocks)
    results: dict[str, dict[str, list[float]]] = {
        mode: {"put_ms": [], "upload_s": []} for mode in ("off", "on")
    }
    made: list[str] = []
    conn = openstack.connect(cloud=info["admin_cloud"])
    try:
        base = conn.image.find_image("cirros-base", ignore_missing=False)
        volume = conn.block_storage.create_volume(size=1, image_id=base.id, name="bench-filter")
        volume = conn.block_storage.wait_for_status(volume, "available", failures=["error"])
        made_volume = volume
        index = 0
        for block in range(args.blocks):
            for mode in ("off", "on"):
                stack_up(state, args.port_base, mode)
                conn.close()
                conn = openstack.connect(cloud=info["admin_cloud"])
                for n in range(WARMUP + per_block):
                    index += 1
                    image_id, seconds = upload_once(conn, volume, index, mode == "on")
                    made.append(image_id)
                    if n >= WARMUP:
                        results[mode]["put_ms"].append(put_msecs(log, image_id))
                        results[mode]["upload_s"].append(seconds)
                print(f"block {block + 1}/{args.blocks} filter {mode}: done", file=sys.stderr)
    finally:
        stack_up(state, args.port_base, "on")
        conn.close()
        conn = openstack.connect(cloud=info["admin_cloud"])
        for image_id in made:
            conn.image.delete_image(image_id, ignore_missing=True)
        if "made_volume" in locals():
            conn.block_storage.delete_volume(made_volume, ignore_missing=True)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    print(f"uploads counted per mode: {len(results['on']['put_ms'])}")
    print("mode  PUT /file median (ms, Glance)  whole upload median (s, client)")
    for mode in ("off", "on"):
        r = results[mode]
        print(f"{mode:4}  {median(r['put_ms']):10.1f}  {median(r['upload_s']):12.3f}")
    put_delta = median(results["on"]["put_ms"]) - median(results["off"]["put_ms"])
    up_delta = median(results["on"]["upload_s"]) - median(results["off"]["upload_s"])
    print(
        f"added by the filter: PUT /file {put_delta:+.1f} ms; whole upload {up_delta * 1000:+.0f} ms"
    )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
