#!/usr/bin/env python3
"""Measure what volimg's Glance filter adds to a volume upload, on the real test stack.

Two kinds of upload, with the filter on and with ``enabled = false``, in alternating
blocks so that drift hits both alike (``stack.py up --glance-filter on|off`` restarts
Glance when the setting changes; the first uploads after a restart are warm-up and not
counted):

- **Glance's data upload as its client sees it**: the bench sends a data upload like
  Cinder's, ``PUT /v2/images/<id>/file`` with ``x-openstack-base-image-ref`` (1 MiB
  with a Content-Length, as admin, where Cinder sends chunked data as the volume's
  owner), and times it from the request to the 204. Then, with the filter on, it reads the image until the
  stamp is there: the stamp's lag after the 204. uWSGI's request log gives the
  worker's own time ("in N msecs"), which ends only after the response's ``close()``,
  where the filter stamps.
- **A Cinder upload** of a 1 GiB volume made from the seeded ``cirros-base`` (qcow2):
  from Cinder's 202 to the image ``active`` and the volume ``available``, and whether the
  image was already stamped at that moment (the filter stamps after Glance's 204, so a
  fast Cinder could get there first); the bench then waits for the stamp.

Each upload is checked: stamped by the filter when it is on, never when it is off.

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
PUT_DATA = b"\0" * (1 << 20)  # 1 MiB of a raw image


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


def stamp_msecs(log: Path, image_id: str) -> float:
    """The filter's own time for one stamp, from its log line ("stamped in N ms")."""
    pattern = re.compile(rf"volimg_stamp: image {image_id}, .*: stamped in ([0-9.]+) ms")
    found = pattern.findall(log.read_text(errors="replace"))
    if not found:
        raise RuntimeError(f"no stamp line for {image_id} in {log}")
    return float(found[-1])


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


STAMP_WAIT = 10.0  # seconds: a stamp later than this is a failure of the run


def stamped_by_filter(image: Any) -> bool:
    return image.properties.get("volimg_stamped_by") == "glance-filter"


def wait_for_stamp(conn: Any, image_id: str, since: float) -> float:
    """Seconds from ``since`` until the filter's stamp is readable."""
    while True:
        image = conn.image.get_image(image_id)
        if stamped_by_filter(image):
            return time.perf_counter() - since
        if time.perf_counter() - since > STAMP_WAIT:
            raise RuntimeError(f"image {image_id}: no stamp {STAMP_WAIT:.0f} s after the upload")
        time.sleep(0.002)


def put_once(conn: Any, base_id: str, index: int, filter_on: bool) -> dict[str, Any]:
    """Glance's data upload, sent the way Cinder sends it, timed by its client."""
    image = conn.image.create_image(
        name=f"bench-filter-put-{index}", disk_format="raw", container_format="bare"
    )
    url = conn.image.get_endpoint().rstrip("/") + f"/images/{image.id}/file"
    headers = {"Content-Type": "application/octet-stream", "x-openstack-base-image-ref": base_id}
    started = time.perf_counter()
    answer = conn.session.put(url, data=PUT_DATA, headers=headers, raise_exc=True)
    answered = time.perf_counter()
    if answer.status_code != 204:
        raise RuntimeError(f"PUT {url}: {answer.status_code}")
    result: dict[str, Any] = {"image_id": image.id, "put_ms": (answered - started) * 1000}
    if filter_on:
        result["stamp_lag_ms"] = wait_for_stamp(conn, image.id, answered) * 1000
    elif stamped_by_filter(conn.image.get_image(image.id)):
        raise RuntimeError("filter off, yet the image is stamped")
    return result


def cinder_once(conn: Any, volume: Any, index: int, filter_on: bool) -> dict[str, Any]:
    """A Cinder upload: 202 to image active and volume available."""
    started = time.perf_counter()
    answer = conn.block_storage.upload_volume_to_image(
        volume, f"bench-filter-{index}", disk_format="qcow2", container_format="bare"
    )
    image_id = str(answer["image_id"])
    while True:
        # The volume first: Cinder makes it available only after Glance's 204.
        vol = conn.block_storage.get_volume(volume.id)
        image = conn.image.get_image(image_id)
        if image.status == "active" and vol.status == "available":
            done = time.perf_counter()
            result: dict[str, Any] = {
                "image_id": image_id,
                "upload_s": done - started,
                "stamped_when_available": stamped_by_filter(image),
            }
            if filter_on and not result["stamped_when_available"]:
                wait_for_stamp(conn, image_id, done)
            if not filter_on and result["stamped_when_available"]:
                raise RuntimeError("filter off, yet the image is stamped")
            return result
        if image.status in ("killed", "deleted") or vol.status == "error":
            raise RuntimeError(f"upload {image_id} failed: {image.status} / {vol.status}")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--port-base", type=int, default=25000)
    parser.add_argument("--uploads", type=int, default=24, help="counted uploads per mode and kind")
    parser.add_argument("--blocks", type=int, default=2, help="blocks per mode, alternating")
    args = parser.parse_args()
    state = args.state.resolve()

    import openstack

    info = json.loads((state / "stack.json").read_text())
    os.environ["OS_CLIENT_CONFIG_FILE"] = info["clouds_yaml"]
    log = Path(info["logs"]) / "glance.log"
    per_block = -(-args.uploads // args.blocks)
    series = ("put_ms", "worker_ms", "stamp_lag_ms", "filter_ms", "upload_s")
    results: dict[str, dict[str, list[float]]] = {
        mode: {name: [] for name in series} for mode in ("off", "on")
    }
    early = {"off": 0, "on": 0}  # Cinder uploads already stamped when the volume was available
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
                on = mode == "on"
                stack_up(state, args.port_base, mode)
                conn.close()
                conn = openstack.connect(cloud=info["admin_cloud"])
                for n in range(WARMUP + per_block):
                    index += 1
                    put = put_once(conn, base.id, index, on)
                    cinder = cinder_once(conn, volume, index, on)
                    made += [put["image_id"], cinder["image_id"]]
                    if n < WARMUP:
                        continue
                    r = results[mode]
                    r["put_ms"].append(put["put_ms"])
                    r["worker_ms"].append(put_msecs(log, put["image_id"]))
                    if on:
                        r["stamp_lag_ms"].append(put["stamp_lag_ms"])
                        r["filter_ms"].append(stamp_msecs(log, put["image_id"]))
                    r["upload_s"].append(cinder["upload_s"])
                    early[mode] += cinder["stamped_when_available"]
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

    counted = len(results["on"]["put_ms"])
    print(f"uploads counted per mode and kind: {counted}")

    def quartiles(values: list[float], scale: float) -> str:
        q1, _, q3 = statistics.quantiles([v * scale for v in values], n=4)
        return f"{q1:.1f} to {q3:.1f}"

    print("| | filter off | filter on | added (medians) | quartiles off | quartiles on |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = (
        ("Glance's `PUT /file` as its client sees it, median", "put_ms", 1.0, "ms"),
        ("the uWSGI worker's time for that PUT, median", "worker_ms", 1.0, "ms"),
        ("Cinder upload, 202 to `active` and `available`, median", "upload_s", 1000.0, "ms"),
    )
    for label, key, scale, unit in rows:
        off = median(results["off"][key]) * scale
        on = median(results["on"][key]) * scale
        print(
            f"| {label} | {off:.1f} {unit} | {on:.1f} {unit} | {on - off:+.1f} {unit} |"
            f" {quartiles(results['off'][key], scale)} {unit}"
            f" | {quartiles(results['on'][key], scale)} {unit} |"
        )
    lags = results["on"]["stamp_lag_ms"]
    own = results["on"]["filter_ms"]
    print(
        f"the filter's own time per stamp (its log line): median {median(own):.1f} ms,"
        f" {min(own):.1f} to {max(own):.1f} ms"
    )
    print(
        f"stamp readable after the 204: median {median(lags):.1f} ms, max {max(lags):.1f} ms"
        f" (includes one image GET); Cinder uploads already stamped when the volume was"
        f" available: {early['on']} of {counted}"
    )
    print(json.dumps({"results": results, "stamped_when_available": early}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
