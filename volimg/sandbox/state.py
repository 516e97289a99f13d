"""The sandbox cloud's in-memory state: one lock over everything.

Every resource is a small mutable dataclass; the service modules render them in their
own wire formats. Tests reach this through `Sandbox.cloud` to inspect it or to change
it behind a client's back (delete an image, set a volume status).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

MIB = 1024 * 1024
GIB = 1024 * MIB


class _Clock:
    """How far the sandbox's clock runs ahead of the real one.

    Process-wide, because `now()` is read everywhere (dataclass defaults included):
    two sandboxes running at once in one process share it. `Sandbox.advance_clock`
    moves it and `Sandbox.stop` takes its own share back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(0)

    @property
    def offset(self) -> timedelta:
        with self._lock:
            return self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += timedelta(seconds=seconds)

    def rewind(self, seconds: float) -> None:
        """Undo an earlier `advance` (when its sandbox stops)."""
        with self._lock:
            self._offset -= timedelta(seconds=seconds)


CLOCK = _Clock()


def now() -> datetime:
    """Current UTC time, plus `CLOCK.offset`; the one clock of the sandbox."""
    return datetime.now(timezone.utc) + CLOCK.offset


def new_id() -> str:
    """A dashed UUID, as Cinder and Glance use for their resources."""
    return str(uuid.uuid4())


def new_hex_id() -> str:
    """A dashless UUID, as Keystone uses for its resources."""
    return uuid.uuid4().hex


def glance_time(moment: datetime | None) -> str | None:
    """Glance's `timeutils.isotime`: second precision with a `Z`."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def db_time(moment: datetime | None) -> str | None:
    """oslo `jsonutils.to_primitive` of a DB datetime (Cinder views, Glance tasks)."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%f")


def keystone_time(moment: datetime) -> str:
    """Keystone token timestamps: microseconds and a `Z`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- identity


@dataclass
class Project:
    id: str
    name: str
    domain_id: str = "default"


@dataclass
class User:
    id: str
    name: str
    password: str
    default_project_id: str
    domain_id: str = "default"


@dataclass
class Role:
    id: str
    name: str


@dataclass
class Token:
    """An issued Keystone token; `roles` are names, implied roles included."""

    id: str
    user_id: str
    project_id: str | None
    roles: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    audit_id: str
    methods: tuple[str, ...] = ("password",)

    @property
    def is_admin(self) -> bool:
        """Both Cinder (`context_is_admin`) and Glance treat `role:admin` as admin."""
        return "admin" in self.roles

    def expired(self, at: datetime | None = None) -> bool:
        return (at or now()) >= self.expires_at


# ---------------------------------------------------------------------------- image


@dataclass
class Store:
    """A Glance backend. `kind` is the glance_store driver ("file", "http", ...)."""

    id: str
    description: str
    kind: str = "file"
    weight: int = 0
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def read_only(self) -> bool:
        """Glance reports http stores as read-only (glance/api/v2/discovery.py)."""
        return self.kind == "http"


@dataclass
class Image:
    """A Glance image. `locations` lists store IDs in insertion order."""

    id: str
    name: str | None
    owner: str | None
    status: str = "queued"
    visibility: str = "shared"
    protected: bool = False
    os_hidden: bool = False
    disk_format: str | None = None
    container_format: str | None = None
    min_disk: int = 0
    min_ram: int = 0
    size: int | None = None
    virtual_size: int | None = None
    checksum: str | None = None
    os_hash_algo: str | None = None
    os_hash_value: str | None = None
    tags: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    locations: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)

    @property
    def stores(self) -> tuple[str, ...]:
        return tuple(self.locations)


@dataclass
class ImportTask:
    """A Glance `api_image_import` task, as `glance.db.sqlalchemy.api._task_format` sees it."""

    id: str
    image_id: str
    owner: str | None
    user_id: str | None
    request_id: str
    input: dict[str, Any]
    status: str = "pending"
    result: dict[str, Any] | None = None
    message: str = ""
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    expires_at: datetime | None = None


# --------------------------------------------------------------------------- volume


@dataclass
class VolumeType:
    id: str
    name: str
    description: str | None = None
    is_public: bool = True
    extra_specs: dict[str, str] = field(default_factory=dict)
    qos_specs_id: str | None = None
    created_at: datetime = field(default_factory=now)
    updated_at: datetime | None = None


@dataclass
class Attachment:
    id: str
    volume_id: str
    instance_uuid: str | None
    mountpoint: str | None
    attached_host: str | None
    attach_time: datetime = field(default_factory=now)
    attach_status: str = "attached"


@dataclass
class Volume:
    """A Cinder volume. `data` is a small synthetic payload standing for its content."""

    id: str
    name: str | None
    project_id: str
    user_id: str
    size: int
    volume_type_id: str
    status: str = "creating"
    previous_status: str | None = None
    description: str | None = None
    availability_zone: str = "nova"
    bootable: bool = False
    host: str | None = None
    service_uuid: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    image_metadata: dict[str, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    data: bytes = b""
    created_at: datetime = field(default_factory=now)
    updated_at: datetime | None = None

    def touch(self) -> None:
        self.updated_at = now()


@dataclass
class UserMessage:
    """A Cinder user message (cinder/message/api.py `create`)."""

    id: str
    project_id: str
    request_id: str
    resource_type: str
    resource_uuid: str | None
    action_id: str
    detail_id: str
    message_level: str
    created_at: datetime
    expires_at: datetime
    internal_detail: str = ""

    @property
    def event_id(self) -> str:
        return f"VOLUME_{self.resource_type}_{self.action_id}_{self.detail_id}"


# ---------------------------------------------------------------------------- cloud

_T = TypeVar("_T")


def _find(kind: str, ref: str, by_id: dict[str, _T], candidates: Iterable[_T], name_of: Any) -> _T:
    if ref in by_id:
        return by_id[ref]
    named = [item for item in candidates if name_of(item) == ref]
    if len(named) == 1:
        return named[0]
    if not named:
        raise KeyError(f"no {kind} with ID or name {ref!r}")
    raise KeyError(f"{len(named)} {kind}s are named {ref!r}; use an ID")


@dataclass
class CloudConfig:
    """Operator settings that a client cannot see but that change behaviour."""

    import_methods: tuple[str, ...] = ("glance-direct", "web-download", "copy-image")
    enable_force_upload: bool = True
    token_ttl: float = 3600.0
    volume_host: str = "sandbox@file#file"
    max_microversion: str = "3.71"
    # Glance's enabled_backends: False makes GET /v2/info/stores answer 404 and image
    # views lose their `stores`, as a single-store Glance does.
    multi_store: bool = True
    # Roles Glance's `copy_image` policy lets through (its default: admin only); () refuses
    # everyone, ("admin", "member") lets project members copy too.
    copy_image_roles: tuple[str, ...] = ("admin",)
    # Glance's unified limits (`use_keystone_limits`), quota name -> limit (MiB for
    # image_size_total and image_stage_total, images for the counts; -1 unlimited).
    # None: unified limits off, and GET /v2/info/usage reports no quota.
    glance_limits: dict[str, int] | None = None


class Cloud:
    """All state of one sandbox. Hold `lock` while reading or changing anything."""

    def __init__(self, config: CloudConfig | None = None) -> None:
        self.lock = threading.RLock()
        self.config = config or CloudConfig()
        self.projects: dict[str, Project] = {}
        self.users: dict[str, User] = {}
        self.roles: dict[str, Role] = {}
        self.assignments: dict[tuple[str, str], tuple[str, ...]] = {}
        self.tokens: dict[str, Token] = {}
        self.stores: dict[str, Store] = {}
        self.default_store: str | None = None
        self.images: dict[str, Image] = {}
        self.tasks: dict[str, ImportTask] = {}
        self.volume_types: dict[str, VolumeType] = {}
        self.default_volume_type: str | None = None
        self.volumes: dict[str, Volume] = {}
        self.messages: dict[str, UserMessage] = {}
        self.service_uuid = new_id()

    # -- identity ------------------------------------------------------------------
    def add_project(self, name: str) -> Project:
        with self.lock:
            project = Project(new_hex_id(), name)
            self.projects[project.id] = project
            return project

    def add_role(self, name: str) -> Role:
        with self.lock:
            role = Role(new_hex_id(), name)
            self.roles[role.id] = role
            return role

    def add_user(self, name: str, password: str, project: Project, roles: Iterable[str]) -> User:
        with self.lock:
            user = User(new_hex_id(), name, password, project.id)
            self.users[user.id] = user
            self.assignments[(user.id, project.id)] = tuple(roles)
            return user

    def role_by_name(self, name: str) -> Role:
        with self.lock:
            return _find("role", name, {}, self.roles.values(), lambda r: r.name)

    def find_project(self, ref: str) -> Project:
        with self.lock:
            return _find("project", ref, self.projects, self.projects.values(), lambda p: p.name)

    def find_user(self, ref: str) -> User:
        with self.lock:
            return _find("user", ref, self.users, self.users.values(), lambda u: u.name)

    def valid_token(self, token_id: str | None) -> Token | None:
        """The token if it exists and has not expired (what keystonemiddleware checks)."""
        if not token_id:
            return None
        with self.lock:
            token = self.tokens.get(token_id.strip())
        if token is None or token.expired():
            return None
        return token

    def expire_tokens(self) -> None:
        """Make every issued token expired (for 401 tests)."""
        with self.lock:
            past = now() - timedelta(seconds=1)
            for token in self.tokens.values():
                token.expires_at = past

    # -- image ---------------------------------------------------------------------
    def add_store(
        self, store_id: str, description: str, *, kind: str = "file", default: bool = False
    ) -> Store:
        with self.lock:
            store = Store(store_id, description, kind, weight=len(self.stores) * 100)
            self.stores[store_id] = store
            if default or self.default_store is None:
                self.default_store = store_id
            return store

    def find_image(self, ref: str) -> Image:
        """An image by ID or unique name."""
        with self.lock:
            return _find("image", ref, self.images, self.images.values(), lambda i: i.name)

    def images_named(self, name: str) -> list[Image]:
        with self.lock:
            return [image for image in self.images.values() if image.name == name]

    def remove_image(self, ref: str) -> None:
        """Delete an image and its data outright, as another user or operator would."""
        with self.lock:
            image = self.find_image(ref)
            for store_id in image.locations:
                self.stores[store_id].blobs.pop(image.id, None)
            del self.images[image.id]

    def tasks_for(self, image_ref: str) -> list[ImportTask]:
        with self.lock:
            image_id = image_ref if image_ref in self.images else self.find_image(image_ref).id
            return [task for task in self.tasks.values() if task.image_id == image_id]

    # -- volume --------------------------------------------------------------------
    def add_volume_type(
        self,
        name: str,
        *,
        description: str | None = None,
        extra_specs: dict[str, str] | None = None,
    ) -> VolumeType:
        with self.lock:
            vtype = VolumeType(new_id(), name, description, extra_specs=dict(extra_specs or {}))
            self.volume_types[vtype.id] = vtype
            return vtype

    def find_volume_type(self, ref: str) -> VolumeType:
        with self.lock:
            return _find(
                "volume type", ref, self.volume_types, self.volume_types.values(), lambda t: t.name
            )

    def find_volume(self, ref: str) -> Volume:
        """A volume by ID or unique name."""
        with self.lock:
            return _find("volume", ref, self.volumes, self.volumes.values(), lambda v: v.name)

    def volumes_named(self, name: str) -> list[Volume]:
        with self.lock:
            return [volume for volume in self.volumes.values() if volume.name == name]

    def set_volume_status(self, ref: str, status: str) -> Volume:
        """Force a volume's status, like `cinder reset-state` would."""
        with self.lock:
            volume = self.find_volume(ref)
            volume.status = status
            volume.touch()
            return volume

    def messages_for(self, resource_uuid: str) -> list[UserMessage]:
        with self.lock:
            return [m for m in self.messages.values() if m.resource_uuid == resource_uuid]
