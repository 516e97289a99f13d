"""A Cinder volume driver that keeps each volume as a sparse file.

No built-in Cinder driver works in this container (no device-mapper for LVM, no NFS
client, no iSCSI target), so the test stack loads this one with
``volume_driver = realstack.file_driver.FileVolumeDriver``. Only the control path the
tests exercise is real: create (blank, from image, clone, from snapshot), delete,
extend, snapshots, and upload to Glance. "Attaching" hands out the file path
(``driver_volume_type: local``) so the attachments API can take a volume to
``in-use``; nothing is exported.

Every image transfer goes through Cinder's own helpers, so the wire traffic to Glance
is exactly Cinder's: ``image_utils.fetch_to_raw`` to download, and
``volume_utils.upload_volume`` to upload (it reads the type's
``image_service:store_id`` and the volume's base ``image_id`` and sends them as
``x-image-meta-store`` and ``x-openstack-base-image-ref``).

We run as root without rootwrap, so commands run with ``run_as_root=False`` and
privsep (used by Cinder's format inspector) starts the venv's ``privsep-helper``
through ``helper_command`` in cinder.conf.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from cinder import exception, utils
from cinder.image import image_utils
from cinder.volume import driver, volume_utils
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import units

LOG = logging.getLogger(__name__)

file_volume_opts = [
    cfg.StrOpt(
        "realstack_volume_dir",
        help="Folder holding one sparse file per volume and per snapshot.",
    ),
]


class FileVolumeDriver(driver.VolumeDriver):
    """Volumes and snapshots as sparse files in ``realstack_volume_dir``."""

    VERSION = "1.0.0"
    # Cinder refuses to start drivers whose CI is not maintained unless they say so.
    SUPPORTED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(file_volume_opts)
        self.backend_name = self.configuration.safe_get("volume_backend_name") or "file"

    # -- setup and stats ------------------------------------------------------

    @property
    def _dir(self) -> str:
        return self.configuration.realstack_volume_dir

    def do_setup(self, context) -> None:
        os.makedirs(self._dir, exist_ok=True)

    def check_for_setup_error(self) -> None:
        if not self._dir or not os.access(self._dir, os.W_OK):
            raise exception.VolumeBackendAPIException(
                data=f"realstack_volume_dir {self._dir!r} is not a writable folder"
            )
        if shutil.which("qemu-img") is None:
            raise exception.VolumeBackendAPIException(
                data="qemu-img not found (Debian package qemu-utils)"
            )

    def _update_volume_stats(self) -> None:
        # One pool with unbounded thin capacity, so the scheduler's capacity filter
        # never refuses a test volume.
        self._stats = {
            "volume_backend_name": self.backend_name,
            "vendor_name": "volimg realstack",
            "driver_version": self.VERSION,
            "storage_protocol": "file",
            "pools": [
                {
                    "pool_name": self.backend_name,
                    "total_capacity_gb": "infinite",
                    "free_capacity_gb": "infinite",
                    "reserved_percentage": 0,
                    "thin_provisioning_support": True,
                    "thick_provisioning_support": False,
                    "max_over_subscription_ratio": 20.0,
                    "QoS_support": False,
                    "multiattach": False,
                }
            ],
        }

    # -- paths ----------------------------------------------------------------

    def local_path(self, volume) -> str:
        return os.path.join(self._dir, volume.name)

    def _snapshot_path(self, snapshot) -> str:
        return os.path.join(self._dir, snapshot.name)

    @staticmethod
    def _make_sparse(path: str, size_gb: int) -> None:
        with open(path, "ab") as f:
            f.truncate(size_gb * units.Gi)

    @staticmethod
    def _copy_sparse(src: str, dst: str) -> None:
        utils.execute("cp", "--sparse=always", src, dst)

    # -- volumes --------------------------------------------------------------

    def create_volume(self, volume) -> dict:
        self._make_sparse(self.local_path(volume), volume.size)
        return {"provider_location": self.local_path(volume)}

    def delete_volume(self, volume) -> None:
        try:
            os.unlink(self.local_path(volume))
        except FileNotFoundError:
            LOG.info("volume file of %s already gone", volume.id)

    def extend_volume(self, volume, new_size) -> None:
        self._make_sparse(self.local_path(volume), new_size)

    def create_cloned_volume(self, volume, src_vref) -> dict:
        self._copy_sparse(self.local_path(src_vref), self.local_path(volume))
        self._make_sparse(self.local_path(volume), volume.size)
        return {"provider_location": self.local_path(volume)}

    def create_snapshot(self, snapshot) -> None:
        self._copy_sparse(self.local_path(snapshot.volume), self._snapshot_path(snapshot))

    def delete_snapshot(self, snapshot) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._snapshot_path(snapshot))

    def create_volume_from_snapshot(self, volume, snapshot) -> dict:
        self._copy_sparse(self._snapshot_path(snapshot), self.local_path(volume))
        self._make_sparse(self.local_path(volume), volume.size)
        return {"provider_location": self.local_path(volume)}

    # -- images ---------------------------------------------------------------

    def copy_image_to_volume(
        self, context, volume, image_service, image_id, disable_sparse=False
    ) -> None:
        """Download and convert to raw, then grow the file back to the volume size.

        Same steps as Cinder's file-based drivers (remotefs.RemoteFSDriver): the
        raw conversion replaces the file with one of the image's virtual size, so
        it is resized to the size the user asked for and checked.
        """
        path = self.local_path(volume)
        image_utils.fetch_to_raw(
            context,
            image_service,
            image_id,
            path,
            self.configuration.volume_dd_blocksize,
            size=volume.size,
            run_as_root=False,
            disable_sparse=disable_sparse,
        )
        image_utils.resize_image(path, volume.size, run_as_root=False, file_format="raw")
        info = image_utils.qemu_img_info(path, run_as_root=False, img_format="raw")
        if info.virtual_size // units.Gi != volume.size:
            raise exception.ImageUnacceptable(
                image_id=image_id,
                reason=f"expected {volume.size} GiB, got {info.virtual_size} bytes",
            )

    def copy_volume_to_image(self, context, volume, image_service, image_meta) -> None:
        """Upload through Cinder's own helper so Cinder sends the store headers."""
        volume_utils.upload_volume(
            context,
            image_service,
            image_meta,
            self.local_path(volume),
            volume,
            run_as_root=False,
        )

    # -- attach/export: nothing to export, the file path is the connection -----

    def ensure_export(self, context, volume) -> None:
        pass

    def create_export(self, context, volume, connector) -> None:
        pass

    def remove_export(self, context, volume) -> None:
        pass

    def initialize_connection(self, volume, connector, **kwargs) -> dict:
        return {
            "driver_volume_type": "local",
            "data": {"device_path": self.local_path(volume)},
        }

    def terminate_connection(self, volume, connector, **kwargs) -> None:
        pass
