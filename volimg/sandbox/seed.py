"""The two starting worlds of a sandbox: `empty` and `demo` (documented in docs/sandbox.md)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from volimg.sandbox.cinder_manager import BLANK_VOLUME, volume_image_metadata
from volimg.sandbox.diskformat import qcow2_wrap, to_raw
from volimg.sandbox.glance_image_data import store_data
from volimg.sandbox.glance_views import image_view
from volimg.sandbox.state import MIB, Attachment, Cloud, Image, Volume, new_id, now

SEEDS = ("demo", "empty")
CIRROS_VIRTUAL_SIZE = 112 * MIB


@dataclass(frozen=True)
class Credentials:
    """A user of the sandbox and the project its token is scoped to."""

    username: str
    password: str
    project_name: str


@dataclass(frozen=True)
class Identities:
    admin: Credentials
    member: Credentials


def seed_identities(cloud: Cloud) -> Identities:
    """Roles as `keystone-manage bootstrap` makes them, an admin and a member user."""
    for role in ("admin", "manager", "member", "reader"):
        cloud.add_role(role)
    admin_project = cloud.add_project("admin")
    member_project = cloud.add_project("demo")
    admin = Credentials("admin", secrets.token_urlsafe(12), admin_project.name)
    member = Credentials("member", secrets.token_urlsafe(12), member_project.name)
    cloud.add_user(admin.username, admin.password, admin_project, ("admin", "member"))
    cloud.add_user(member.username, member.password, member_project, ("member",))
    return Identities(admin, member)


def seed_base(cloud: Cloud, read_only_stores: tuple[str, ...]) -> None:
    """Stores and Cinder's built-in default volume type: what every sandbox has."""
    cloud.add_store("fast", "Fast store for images in use", default=True)
    cloud.add_store("cheap", "Less expensive store for seldom-used images")
    cloud.add_store("archive", "Long-term archive store")
    for store_id in read_only_stores:
        store = cloud.stores.get(store_id) or cloud.add_store(store_id, "Read-only http store")
        store.kind = "http"
    default = cloud.add_volume_type("__DEFAULT__", description="Default Volume Type")
    cloud.default_volume_type = default.id


def cirros_payload() -> bytes:
    """A small, deterministic stand-in for the cirros disk content (raw)."""
    line = b"cirros-base sandbox disk block\n"
    return (line * (12288 // len(line) + 1))[:12288]


def seed_demo(cloud: Cloud) -> None:
    """The demo world: one base image in two stores, two types and six volumes."""
    admin = cloud.find_user("admin")
    project_id = admin.default_project_id
    start = now() - timedelta(minutes=10)
    image = Image(
        id=new_id(),
        name="cirros-base",
        owner=project_id,
        visibility="public",
        disk_format="qcow2",
        container_format="bare",
        # Uploaded to `cheap`, then copied to `archive` with copy-image, which leaves
        # these two (empty) properties behind, as on a real cloud.
        extra={
            "os_distro": "cirros",
            "hw_disk_bus": "virtio",
            "os_glance_importing_to_stores": "",
            "os_glance_failed_import": "",
        },
        created_at=start,
    )
    cloud.images[image.id] = image
    data = qcow2_wrap(cirros_payload(), CIRROS_VIRTUAL_SIZE)
    store_data(cloud, image, "cheap", data, CIRROS_VIRTUAL_SIZE)
    cloud.stores["archive"].blobs[image.id] = data
    image.locations.append("archive")
    image.updated_at = start

    standard = cloud.add_volume_type(
        "standard", description="Standard volumes; images go to the default store"
    )
    pinned = cloud.add_volume_type(
        "pinned-archive",
        description="Images of these volumes go to the archive store",
        extra_specs={"image_service:store_id": "archive"},
    )
    image_meta = volume_image_metadata(image_view(image))
    specs = [
        ("boot-vol", standard.id, True, "available"),
        ("pinned-vol", pinned.id, True, "available"),
        ("data-vol", standard.id, False, "available"),
        ("busy-vol", standard.id, True, "in-use"),
        ("twin", standard.id, False, "available"),
        ("twin", standard.id, False, "available"),
    ]
    for index, (name, type_id, from_image, status) in enumerate(specs):
        created = start + timedelta(seconds=10 * (index + 1))
        volume = Volume(
            id=new_id(),
            name=name,
            project_id=project_id,
            user_id=admin.id,
            size=1,
            volume_type_id=type_id,
            status=status,
            bootable=from_image,
            host=cloud.config.volume_host,
            service_uuid=cloud.service_uuid,
            image_metadata=dict(image_meta) if from_image else {},
            data=to_raw(data) if from_image else BLANK_VOLUME,
            created_at=created,
            updated_at=created + timedelta(seconds=5),
        )
        if status == "in-use":
            volume.attachments.append(
                Attachment(
                    new_id(),
                    volume.id,
                    new_id(),
                    "/dev/vdb",
                    "sandbox-compute",
                    attach_time=created,
                )
            )
        cloud.volumes[volume.id] = volume
        if name == "boot-vol":
            _seed_earlier_uploads(cloud, volume, image, project_id, start)


def _seed_earlier_uploads(
    cloud: Cloud, volume: Volume, base: Image, project_id: str | None, start: datetime
) -> None:
    """Two images volimg made of boot-vol on earlier nights, as `volimg audit` finds them.

    The newer one is in every store its base image is in (and the default store);
    the older one has since lost its `archive` copy, deleted by hand.
    """
    from volimg.provenance import TAG, Rule, Stamp, StampedBy, stamp_time

    for nights_ago, stores in ((1, ("fast", "cheap", "archive")), (7, ("fast", "cheap"))):
        made = start - timedelta(days=nights_ago)
        earlier = Image(
            id=new_id(),
            name=f"boot-vol-{made:%Y%m%d}T020000Z",
            owner=project_id,
            disk_format="raw",
            container_format="bare",
            extra={"os_distro": "cirros", "hw_disk_bus": "virtio"},
            tags=[TAG],
            created_at=made,
        )
        earlier.extra.update(
            Stamp(
                image_id=earlier.id,
                stamped_by=StampedBy.UPLOAD,
                stamped_at=stamp_time(made),
                source_volume=volume.id,
                base_image=base.id,
                type_store=None,
                rule=Rule.BASE_STORES,
            ).properties()
        )
        cloud.images[earlier.id] = earlier
        raw = to_raw(volume.data)
        store_data(cloud, earlier, stores[0], raw, len(raw))
        for store in stores[1:]:
            cloud.stores[store].blobs[earlier.id] = raw
            earlier.locations.append(store)
        earlier.updated_at = made
