"""``volimg doctor``'s checks: facts about the cloud in, one row per finding out.

When placement fails on a real cloud the cause is almost always the cloud's
configuration (docs/doctor.md). The checks here are pure: ``volimg.checkup`` reads the
cloud once into ``DoctorFacts`` (a bounded number of requests, never one per volume or
image) and ``diagnose`` turns them into ``Check`` rows, each with a status, the thing
it is about, one line of detail and the setting, file or command that fixes it. Each
check goes only as far as the APIs let the caller see and says ``skipped``, with the
reason, beyond that. Nothing here reads the cloud, prints or exits.

The package, by concern; a check module imports only ``facts`` of its package, never a
sibling::

    glance    stores    cinder     the checks, one function each, facts in, rows out
       |         |         |
       +------ facts ------+       statuses, check names, bounds, facts, rows, report

- ``facts``: the statuses, the check names (``CHECKS``), the bounds on one run's reads,
  ``DoctorFacts`` (with ``Unread`` and ``EndpointStores``), ``Check``, ``DoctorReport``
  and the text helpers.
- ``glance``: multi-store, copy-image, copy-image-policy, glance-quota and
  stale-import-locks (``lock_is_stale``, audit's rule).
- ``stores``: volume-type-store, base-image-stores and image-endpoints.
- ``cinder``: cinder-microversions and force-upload.

``CHECK_FUNCTIONS`` and ``diagnose`` are here, where every check meets. Every public
name of the former module ``volimg/doctor.py`` is re-exported, so ``from volimg.doctor
import ...`` keeps working: ``volimg.checkup``, the renderers and the tests import from
here, the package's own modules from ``facts``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from volimg.doctor.cinder import (
    MESSAGES_MICROVERSION,
    UPLOAD_OPTIONS_MICROVERSION,
    check_cinder_microversions,
    check_force_upload,
)
from volimg.doctor.facts import (
    BASE_STORES,
    CHECKS,
    CINDER_API,
    COPY_IMAGE,
    ENDPOINTS,
    FAIL,
    FORCE_UPLOAD,
    LOCKS,
    MAX_BASE_IMAGES,
    MAX_LOCK_TASK_READS,
    MAX_OTHER_ENDPOINTS,
    MULTI_STORE,
    OK,
    POLICY,
    QUOTA,
    SKIPPED,
    STATUSES,
    TYPE_STORE,
    WARN,
    Check,
    DoctorFacts,
    DoctorReport,
    EndpointStores,
    Unread,
)
from volimg.doctor.glance import (
    MIB_PER_GIB,
    NEARLY_USED,
    check_copy_image,
    check_copy_image_policy,
    check_glance_quota,
    check_multi_store,
    check_stale_import_locks,
    lock_is_stale,
)
from volimg.doctor.stores import (
    check_base_image_stores,
    check_image_endpoints,
    check_volume_type_stores,
)

#: Each check's function, for docs and tests that walk them.
CHECK_FUNCTIONS: Mapping[str, Callable[[DoctorFacts], list[Check]]] = MappingProxyType(
    {
        MULTI_STORE: check_multi_store,
        COPY_IMAGE: check_copy_image,
        TYPE_STORE: check_volume_type_stores,
        BASE_STORES: check_base_image_stores,
        ENDPOINTS: check_image_endpoints,
        POLICY: check_copy_image_policy,
        QUOTA: check_glance_quota,
        LOCKS: check_stale_import_locks,
        CINDER_API: check_cinder_microversions,
        FORCE_UPLOAD: check_force_upload,
    }
)


def diagnose(facts: DoctorFacts) -> DoctorReport:
    """Run every check on the facts, in the documented order."""
    checks: list[Check] = []
    for run in CHECK_FUNCTIONS.values():
        checks += run(facts)
    return DoctorReport(checks=tuple(checks))


__all__ = [
    "BASE_STORES",
    "CHECKS",
    "CHECK_FUNCTIONS",
    "CINDER_API",
    "COPY_IMAGE",
    "ENDPOINTS",
    "FAIL",
    "FORCE_UPLOAD",
    "LOCKS",
    "MAX_BASE_IMAGES",
    "MAX_LOCK_TASK_READS",
    "MAX_OTHER_ENDPOINTS",
    "MESSAGES_MICROVERSION",
    "MIB_PER_GIB",
    "MULTI_STORE",
    "NEARLY_USED",
    "OK",
    "POLICY",
    "QUOTA",
    "SKIPPED",
    "STATUSES",
    "TYPE_STORE",
    "UPLOAD_OPTIONS_MICROVERSION",
    "WARN",
    "Check",
    "DoctorFacts",
    "DoctorReport",
    "EndpointStores",
    "Unread",
    "check_base_image_stores",
    "check_cinder_microversions",
    "check_copy_image",
    "check_copy_image_policy",
    "check_force_upload",
    "check_glance_quota",
    "check_image_endpoints",
    "check_multi_store",
    "check_stale_import_locks",
    "check_volume_type_stores",
    "diagnose",
    "lock_is_stale",
]
