"""Pure planning: facts about the cloud in, a plan out, with a reason for each decision.

Nothing here talks to a cloud, reads a clock or prints. Every check that can refuse a
request happens here, so a refusal always comes before the first mutating request.

The rules are the ones Cinder and Glance were designed to follow (the Glance spec for
``x-openstack-base-image-ref``) but Glance never implemented:

1. the volume type's store (extra spec ``image_service:store_id``) wins;
2. else the new image goes to every store the base image is in;
3. else (no base image) it stays in Glance's default store.

The package: ``placement`` (a ``Decision``, the ``Placement`` across stores, and the
store rules both planners apply), ``upload`` (``plan_upload`` for ``volimg upload``
and ``plan``) and ``replication`` (``plan_replication`` for ``volimg replicate``).
Import from ``volimg.planner``: these are its names.
"""

from volimg.planner.placement import Decision, Placement
from volimg.planner.replication import (
    ReplicationFacts,
    ReplicationOptions,
    ReplicationPlan,
    plan_replication,
)
from volimg.planner.upload import (
    BASE_MICROVERSION,
    UPLOAD_PARAMS_MICROVERSION,
    Plan,
    UploadFacts,
    UploadOptions,
    UploadRequest,
    default_image_name,
    plan_upload,
    replan_after_landing,
    upload_image_name,
)

__all__ = [
    "BASE_MICROVERSION",
    "UPLOAD_PARAMS_MICROVERSION",
    "Decision",
    "Placement",
    "Plan",
    "ReplicationFacts",
    "ReplicationOptions",
    "ReplicationPlan",
    "UploadFacts",
    "UploadOptions",
    "UploadRequest",
    "default_image_name",
    "plan_replication",
    "plan_upload",
    "replan_after_landing",
    "upload_image_name",
]
