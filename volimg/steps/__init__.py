"""The steps every command is made of (being split by concern; for now all in ``copy``)."""

from volimg.steps.copy import (
    Job,
    adopt_landing,
    finish,
    prune,
    replicate,
    request_upload,
    stamp_intact,
    wait_for_upload,
    wait_until_active,
    write_stamp,
)

__all__ = [
    "Job",
    "adopt_landing",
    "finish",
    "prune",
    "replicate",
    "request_upload",
    "stamp_intact",
    "wait_for_upload",
    "wait_until_active",
    "write_stamp",
]
