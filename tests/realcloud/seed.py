"""Seed the real test stack through its public APIs (idempotent: safe to re-run).

Run by ``stack.py`` with the *stack's* venv python (it needs openstacksdk, which the
stack venv has through python-openstackclient)::

    python seed.py identity --config DIR/seed-config.json
    python seed.py scenario --config DIR/seed-config.json

``identity`` makes the service catalog and the users; ``scenario`` makes the same
cloud as the sandbox's ``demo`` seed (volimg/sandbox): image ``cirros-base`` in the
``cheap`` and ``archive`` stores, volume types ``standard`` and ``pinned-archive``,
and the volumes ``boot-vol``, ``pinned-vol``, ``data-vol``, ``busy-vol`` (in-use) and
two ``twin`` volumes in the admin project.

Every request is a plain REST call through openstacksdk's authenticated adapters, so
what it sends is visible here; each step first looks at what exists and only
creates what is missing (or replaces what is broken, e.g. a volume in ``error``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import openstack

IMAGE_NAME = "cirros-base"
IMAGE_STORES = ("cheap", "archive")  # uploaded to the first, copied to the rest
IMAGE_PROPERTIES = {"os_distro": "cirros", "hw_disk_bus": "virtio"}
IMAGE_VIRTUAL_SIZE = "64M"  # tiny qcow2 (~200 KiB on disk); fits in a 1 GiB volume

VOLUME_TYPES = {"standard": {}, "pinned-archive": {"image_service:store_id": "archive"}}

# name -> (count, from image?, type, attach?)
VOLUMES: dict[str, tuple[int, bool, str, bool]] = {
    "boot-vol": (1, True, "standard", False),
    "pinned-vol": (1, True, "pinned-archive", False),
    "data-vol": (1, False, "standard", False),
    "busy-vol": (1, True, "standard", True),
    "twin": (2, False, "standard", False),
}

TIMEOUT = 180.0
_T0 = time.monotonic()


class SeedError(Exception):
    """A seed step failed; the message says which request and what came back."""


def log(msg: str) -> None:
    print(f"  seed [{time.monotonic() - _T0:6.1f}s] {msg}", flush=True)


def call(adapter: Any, method: str, url: str, expect: tuple[int, ...], **kwargs: Any) -> Any:
    """One REST call; anything but an expected status is a SeedError with the body."""
    resp = adapter.request(url, method, raise_exc=False, **kwargs)
    if resp.status_code not in expect:
        raise SeedError(
            f"{method} {url} -> {resp.status_code} (expected {expect}): {resp.text[:2000]}"
        )
    return resp


def wait_for(what: str, probe: Any, timeout: float = TIMEOUT, interval: float = 0.5) -> Any:
    """Poll ``probe()`` until it returns something truthy; SeedError at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise SeedError(f"timed out after {timeout:.0f}s waiting for {what}")


# -- identity -----------------------------------------------------------------


def password_works(conn: Any, username: str, password: str) -> bool:
    """Ask Keystone for an unscoped token with this password (201 or 401)."""
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": username, "domain": {"id": "default"}, "password": password}
                },
            }
        }
    }
    resp = conn.identity.post("/auth/tokens", json=body, raise_exc=False)
    return resp.status_code == 201


def ensure_identity(conn: Any, cfg: dict[str, Any]) -> None:
    ident = conn.identity
    domain = ident.find_domain("default", ignore_missing=False)

    roles = {}
    for name in ("admin", "member", "reader", "service"):
        role = ident.find_role(name) or ident.create_role(name=name)
        roles[name] = role

    projects = {}
    for name in ("admin", "service", "demo"):
        project = ident.find_project(name, domain_id=domain.id)
        if project is None:
            project = ident.create_project(name=name, domain_id=domain.id)
            log(f"created project {name}")
        projects[name] = project

    # (user, password, project, roles on that project)
    users = [
        ("admin", cfg["admin"]["password"], "admin", ("admin", "member")),
        ("demo", cfg["member"]["password"], "demo", ("member",)),
        ("glance", cfg["service_password"], "service", ("admin", "service")),
        ("cinder", cfg["service_password"], "service", ("admin", "service")),
    ]
    for name, password, project_name, role_names in users:
        project = projects[project_name]
        user = ident.find_user(name, domain_id=domain.id)
        if user is None:
            user = ident.create_user(
                name=name, password=password, domain_id=domain.id, default_project_id=project.id
            )
            log(f"created user {name}")
        elif name != "admin" and not password_works(conn, name, password):
            # keystone-manage bootstrap owns the admin password. Only reset a password
            # that does not work: Keystone revokes a user's tokens when its password
            # changes, which would pull the rug from clients (and from the services'
            # keystonemiddleware) on every re-seed.
            ident.update_user(user, password=password)
            log(f"reset the password of {name}")
        for role_name in role_names:
            ident.assign_project_role_to_user(project, user, roles[role_name])

    # Service catalog, public interface only, region RegionOne. The identity service
    # and its endpoint come from `keystone-manage bootstrap`; re-ensured here so a
    # changed port updates the URL.
    region = cfg["region"]
    if ident.find_region(region) is None:
        ident.create_region(id=region)
    for svc in cfg["catalog"]:
        service = next(
            (s for s in ident.services() if s.type == svc["type"] and s.name == svc["name"]), None
        )
        if service is None:
            service = ident.create_service(name=svc["name"], type=svc["type"], is_enabled=True)
            log(f"created service {svc['name']} ({svc['type']})")
        endpoints = list(ident.endpoints(service_id=service.id, interface="public"))
        endpoints = [e for e in endpoints if e.region_id == region]
        if not endpoints:
            ident.create_endpoint(
                service_id=service.id, interface="public", url=svc["url"], region_id=region
            )
            log(f"created endpoint {svc['type']} {svc['url']}")
        for extra in endpoints[1:]:
            ident.delete_endpoint(extra)
        if endpoints and endpoints[0].url != svc["url"]:
            ident.update_endpoint(endpoints[0], url=svc["url"])
            log(f"updated endpoint {svc['type']} -> {svc['url']}")
    log("identity: catalog, projects, users and roles in place")


# -- glance -------------------------------------------------------------------


def image_stores(image: dict[str, Any]) -> set[str]:
    # Glance shows the stores holding data as one comma-separated string.
    return {s for s in image.get("stores", "").split(",") if s}


def ensure_base_image(conn: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    glance = conn.image
    info = call(glance, "GET", "/info/stores", (200,)).json()
    known = {s["id"] for s in info["stores"]}
    missing = {"fast", *IMAGE_STORES} - known
    if missing:
        raise SeedError(f"Glance lacks stores {sorted(missing)}: {info}")

    images = call(glance, "GET", f"/images?name={IMAGE_NAME}", (200,)).json()["images"]
    keep = None
    for image in images:
        if keep is None and image["status"] == "active" and image_stores(image):
            keep = image
        else:
            # Left over from an interrupted seed (queued/saving/killed) or a duplicate.
            log(f"deleting {IMAGE_NAME} {image['id']} ({image['status']})")
            if image.get("protected"):
                call(
                    glance,
                    "PATCH",
                    f"/images/{image['id']}",
                    (200,),
                    json=[{"op": "replace", "path": "/protected", "value": False}],
                    headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
                )
            call(glance, "DELETE", f"/images/{image['id']}", (204, 404))

    if keep is None:
        qcow2 = Path(cfg["work"]) / f"{IMAGE_NAME}.qcow2"
        if not qcow2.exists():
            qcow2.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["qemu-img", "create", "-f", "qcow2", str(qcow2), IMAGE_VIRTUAL_SIZE],
                check=True,
                capture_output=True,
            )
        body = {
            "name": IMAGE_NAME,
            "disk_format": "qcow2",
            "container_format": "bare",
            "visibility": "public",
            **IMAGE_PROPERTIES,
        }
        keep = call(glance, "POST", "/images", (201,), json=body).json()
        # x-image-meta-store picks the store (multi-store Glance); default_backend otherwise.
        call(
            glance,
            "PUT",
            f"/images/{keep['id']}/file",
            (204,),
            data=qcow2.read_bytes(),
            headers={
                "Content-Type": "application/octet-stream",
                "X-Image-Meta-Store": IMAGE_STORES[0],
            },
        )
        keep = call(glance, "GET", f"/images/{keep['id']}", (200,)).json()
        log(f"created {IMAGE_NAME} {keep['id']} in {keep.get('stores')}")

    image_id = keep["id"]
    todo = [s for s in IMAGE_STORES if s not in image_stores(keep)]
    if todo:
        # copy-image; wait for the stores AND the end of the import lock
        # (os_glance_import_task is removed when the task ends, success or not).
        call(
            glance,
            "POST",
            f"/images/{image_id}/import",
            (202,),
            json={
                "method": {"name": "copy-image"},
                "stores": todo,
                "all_stores_must_succeed": True,
            },
        )

        def copied() -> dict[str, Any] | None:
            image = call(glance, "GET", f"/images/{image_id}", (200,)).json()
            if image.get("os_glance_failed_import"):
                raise SeedError(f"copy-image of {IMAGE_NAME} failed: {image}")
            done = set(todo) <= image_stores(image) and not image.get("os_glance_import_task")
            return image if done else None

        keep = wait_for(f"{IMAGE_NAME} to be copied to {todo}", copied)
        log(f"copied {IMAGE_NAME} to {todo}: stores={keep['stores']}")
    return keep


# -- cinder -------------------------------------------------------------------


def ensure_volume_types(conn: Any) -> dict[str, dict[str, Any]]:
    cinder = conn.block_storage
    types = {t["name"]: t for t in call(cinder, "GET", "/types", (200,)).json()["volume_types"]}
    for name, specs in VOLUME_TYPES.items():
        if name not in types:
            body = {"volume_type": {"name": name, "os-volume-type-access:is_public": True}}
            if specs:
                body["volume_type"]["extra_specs"] = specs
            types[name] = call(cinder, "POST", "/types", (200,), json=body).json()["volume_type"]
            log(f"created volume type {name} {specs or ''}")
        current = call(cinder, "GET", f"/types/{types[name]['id']}/extra_specs", (200,)).json()
        if current["extra_specs"] != specs:
            for key in set(current["extra_specs"]) - set(specs):
                call(cinder, "DELETE", f"/types/{types[name]['id']}/extra_specs/{key}", (202,))
            if specs:
                call(
                    cinder,
                    "POST",
                    f"/types/{types[name]['id']}/extra_specs",
                    (200,),
                    json={"extra_specs": specs},
                )
            log(f"reset extra specs of {name} to {specs}")
    return types


def wait_scheduler_ready(conn: Any) -> None:
    """Volume creation fails with "No valid backend" until the scheduler has stats."""
    cinder = conn.block_storage

    def pools() -> list[Any]:
        resp = call(cinder, "GET", "/scheduler-stats/get_pools", (200,))
        return resp.json().get("pools", [])

    wait_for("the Cinder scheduler to receive the volume backend's capabilities", pools, 90)


def list_volumes(cinder: Any, name: str) -> list[dict[str, Any]]:
    return call(cinder, "GET", f"/volumes/detail?name={name}", (200,)).json()["volumes"]


def attach(cinder: Any, volume: dict[str, Any]) -> None:
    """Make a volume truly in-use: an attachment with a connector, then os-complete.

    The attachments API (microversion 3.27+, instance optional from 3.54) asks the
    volume service for a connection (driver.initialize_connection) and marks the
    volume ``attaching``; ``os-complete`` (3.44+) makes it ``in-use``. A reset-state
    to in-use would not survive an upload: Cinder puts the volume back to what its
    attachments say.
    """
    connector = {
        "initiator": "iqn.2026-01.org.volimg:realstack",
        "ip": "127.0.0.1",
        "host": "realstack-compute",
        "platform": "x86_64",
        "os_type": "linux",
        "multipath": False,
        "mountpoint": "/dev/vdb",
    }
    body = {
        "attachment": {
            "volume_uuid": volume["id"],
            "instance_uuid": str(uuid.uuid4()),
            "connector": connector,
            "mode": "rw",
        }
    }
    resp = call(cinder, "POST", "/attachments", (200,), json=body, microversion="3.54")
    attachment_id = resp.json()["attachment"]["id"]
    call(
        cinder,
        "POST",
        f"/attachments/{attachment_id}/action",
        (204,),
        json={"os-complete": {}},
        microversion="3.54",
    )


def ensure_volumes(conn: Any, image_id: str) -> None:
    cinder = conn.block_storage
    created: list[str] = []
    for name, (count, from_image, type_name, _attach) in VOLUMES.items():
        good = []
        for vol in list_volumes(cinder, name):
            if vol["status"] in ("error", "error_deleting"):
                log(f"deleting broken volume {name} {vol['id']} ({vol['status']})")
                call(cinder, "DELETE", f"/volumes/{vol['id']}?force=true", (202, 404))
            else:
                good.append(vol)
        for _ in range(count - len(good)):
            body: dict[str, Any] = {"size": 1, "name": name, "volume_type": type_name}
            if from_image:
                body["imageRef"] = image_id
            vol = call(cinder, "POST", "/volumes", (202,), json={"volume": body}).json()["volume"]
            created.append(vol["id"])
            log(f"creating volume {name} {vol['id']}")

    settled = ("available", "in-use")
    bad = ("error", "error_deleting", "deleting")

    def all_settled() -> bool:
        for name in VOLUMES:
            for vol in list_volumes(cinder, name):
                if vol["status"] in bad:
                    messages = call(
                        cinder,
                        "GET",
                        f"/messages?resource_uuid={vol['id']}",
                        (200,),
                        microversion="3.3",
                    ).json()
                    raise SeedError(f"volume {name} {vol['id']} is {vol['status']}: {messages}")
                if vol["status"] not in settled:
                    return False
        return True

    wait_for("the seed volumes to become available", all_settled)

    for name, (_count, _img, _type, want_attached) in VOLUMES.items():
        if want_attached:
            for vol in list_volumes(cinder, name):
                if vol["status"] == "available":
                    attach(cinder, vol)
                    log(f"attached {name} {vol['id']}")

    def attached() -> bool:
        return all(
            vol["status"] == "in-use"
            for name, spec in VOLUMES.items()
            if spec[3]
            for vol in list_volumes(cinder, name)
        )

    wait_for("busy-vol to become in-use", attached)
    counts = {name: len(list_volumes(cinder, name)) for name in VOLUMES}
    log(f"volumes in place: {counts}")


def ensure_scenario(conn: Any, cfg: dict[str, Any]) -> None:
    image = ensure_base_image(conn, cfg)
    ensure_volume_types(conn)
    wait_scheduler_ready(conn)
    ensure_volumes(conn, image["id"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("identity", "scenario"))
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    cfg = json.loads(args.config.read_text())

    conn = openstack.connect(
        auth_url=cfg["auth_url"],
        username="admin",
        password=cfg["admin"]["password"],
        project_name="admin",
        user_domain_name="Default",
        project_domain_name="Default",
        region_name=cfg["region"],
        interface="public",
        identity_api_version="3",
    )
    try:
        if args.phase == "identity":
            ensure_identity(conn, cfg)
        else:
            ensure_scenario(conn, cfg)
    except (SeedError, openstack.exceptions.SDKException) as exc:
        print(f"seed {args.phase} FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
