"""Just enough disk-image format handling for Glance's upload inspection.

Glance inspects uploads of `bare` images and refuses data that does not match the
declared `disk_format` (glance/location.py, `require_image_format_match`). To keep
that check meaningful the sandbox uses a tiny stand-in for qcow2: a real qcow2 header
(magic, version, cluster bits, virtual size) followed by the raw payload. Converting
to raw strips the header; converting to qcow2 adds it. Checksums therefore stay real
and stable for the same content.
"""

from __future__ import annotations

import struct

QCOW2_MAGIC = b"QFI\xfb"
QCOW2_HEADER = 512
# Formats glance's format_inspector can recognise; others (ami, aki, ari) pass as-is.
INSPECTABLE = frozenset({"raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "iso", "ploop"})


def qcow2_wrap(payload: bytes, virtual_size: int) -> bytes:
    """A qcow2 header (version 2, 64 KiB clusters) announcing `virtual_size`, then the payload."""
    header = QCOW2_MAGIC + struct.pack(">IQIIQ", 2, 0, 0, 16, virtual_size)
    return header.ljust(QCOW2_HEADER, b"\0") + payload


def detect(data: bytes) -> tuple[str, int]:
    """(format, virtual size) as the format inspector reports them."""
    if data.startswith(QCOW2_MAGIC) and len(data) >= 32:
        (virtual_size,) = struct.unpack(">Q", data[24:32])
        return "qcow2", virtual_size
    return "raw", len(data)


def to_raw(data: bytes) -> bytes:
    """What `qemu-img convert -O raw` would write to a volume."""
    if detect(data)[0] == "qcow2":
        return data[QCOW2_HEADER:]
    return data


def convert(raw: bytes, disk_format: str, virtual_size: int) -> bytes:
    """What Cinder's upload sends for a volume whose content is `raw`."""
    if disk_format == "qcow2":
        return qcow2_wrap(raw, virtual_size)
    return raw


def inspect_upload(
    data: bytes, disk_format: str | None, container_format: str | None
) -> tuple[int | None, str | None]:
    """(virtual_size, error) for an upload, following glance/location.py `set_data`."""
    if container_format != "bare":
        return None, None
    found, virtual_size = detect(data)
    if found == disk_format:
        return virtual_size, None
    if found == "raw" and disk_format not in INSPECTABLE:
        return None, None
    if disk_format == "raw":
        return len(data), None
    return None, f"Image disk_format {disk_format} does not match stream data {found}"
