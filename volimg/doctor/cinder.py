"""The checks of Cinder, which makes every upload.

``cinder-microversions`` (the range Cinder advertises: upload options from 3.1, user
messages from 3.3) and ``force-upload`` (whether ``enable_force_upload``, which no API
shows, matters for the caller's in-use volumes).
"""

from __future__ import annotations

from volimg.doctor.facts import (
    CINDER_API,
    FORCE_UPLOAD,
    OK,
    SKIPPED,
    WARN,
    Check,
    DoctorFacts,
    _some,
)
from volimg.model import counted

# Cinder: visibility and protected on os-volume_upload_image from 3.1; user messages
# from 3.3 (cinder/api/microversions.py).
UPLOAD_OPTIONS_MICROVERSION = "3.1"
MESSAGES_MICROVERSION = "3.3"


# --- Cinder ---------------------------------------------------------------------------------


def check_cinder_microversions(facts: DoctorFacts) -> list[Check]:
    """Cinder's microversion range and the upload options it allows."""
    versions = facts.cinder
    subject = "Cinder API"
    if versions.max_version is None:
        return [
            Check(
                CINDER_API,
                WARN,
                subject,
                "Cinder's version document advertises no microversions: volimg uploads at "
                "3.0, without visibility or protected",
                "check the block-storage endpoint in the catalog (it should be Cinder's v3 API)",
            )
        ]
    span = f"microversions {versions.min_version or '3.0'} to {versions.max_version}"
    if not versions.allows(UPLOAD_OPTIONS_MICROVERSION):
        return [
            Check(
                CINDER_API,
                WARN,
                subject,
                f"{span}: uploads cannot set visibility or protected (they need 3.1), and "
                "Cinder's user messages (3.3) cannot explain a failed upload",
                "upgrade Cinder (3.1 came with Newton); until then leave out --visibility and "
                "--protected",
            )
        ]
    messages = (
        "; user messages explain failed uploads (3.3+)"
        if versions.allows(MESSAGES_MICROVERSION)
        else "; no user messages (they need 3.3): a failed upload is not explained"
    )
    return [
        Check(
            CINDER_API,
            OK,
            subject,
            f"{span}: uploads may set visibility and protected (3.1+){messages}",
        )
    ]


def check_force_upload(facts: DoctorFacts) -> list[Check]:
    """For an admin: whether ``enable_force_upload`` matters for in-use volumes.

    No API shows the setting (cinder.conf ``[DEFAULT] enable_force_upload``); what the
    doctor can see is whether any volume would need it.
    """
    subject = "enable_force_upload"
    in_use = [v for v in facts.volumes if v.status == "in-use"]
    conf = "cinder.conf [DEFAULT] enable_force_upload"
    if not facts.identity.is_admin:
        return [
            Check(
                FORCE_UPLOAD,
                SKIPPED,
                subject,
                f"an operator's setting no API shows ({conf}); it decides whether in-use "
                f"volumes can be uploaded (volimg upload --force); you have "
                f"{counted(len(in_use), 'in-use volume')}",
                "ask your operator whether enable_force_upload is true",
            )
        ]
    if not in_use:
        yours = (
            f"none of your {counted(len(facts.volumes), 'volume')} is in-use"
            if facts.volumes
            else "you have no volumes"
        )
        return [
            Check(
                FORCE_UPLOAD,
                OK,
                subject,
                f"{yours}: the setting (which no API shows) does not matter now",
            )
        ]
    return [
        Check(
            FORCE_UPLOAD,
            WARN,
            subject,
            f"{counted(len(in_use), 'volume')} in-use ({_some(v.label for v in in_use)}): "
            f"uploading one needs --force, which Cinder refuses (400) unless {conf} = true; "
            "no API shows that setting",
            f"check {conf} on the cinder-api hosts (crudini --get /etc/cinder/cinder.conf "
            "DEFAULT enable_force_upload)",
        )
    ]
