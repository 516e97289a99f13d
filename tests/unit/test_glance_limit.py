"""Which Glance limit refused a copy, read from the copy task's message.

Glance checks its quotas inside the copy-image task, after its 202, and fails the task
with oslo.limit's words; a full staging directory fails it with ENOSPC. The limit it
names decides whether volimg waits and asks again (``volimg/steps/copy.py``
``glance_limit_hit``): any other outcome is a plain failed copy, never asked again.
"""

from __future__ import annotations

import pytest

from volimg.model import ImportTask
from volimg.steps.copy import glance_limit_hit

# What Glance's copy task says when oslo.limit refuses it (the sandbox says the same:
# volimg/sandbox/glance_import.py).
OVER_LIMIT = (
    "The request returned a 413 Request Entity Too Large. This generally means that rate "
    "limiting or a quota threshold was breached.\n\nThe response body:\nProject p1 is over "
    "a limit for [Resource {quota} is over limit of 1 due to current usage 2 and delta 0]"
)


def task(status: str, message: str) -> ImportTask:
    return ImportTask("t1", status, message, "req-1")


@pytest.mark.parametrize(
    ("status", "message", "limit"),
    [
        pytest.param(
            "failure",
            OVER_LIMIT.format(quota="image_count_uploading"),
            "image_count_uploading",
            id="count-uploading",
        ),
        pytest.param(
            "failure",
            OVER_LIMIT.format(quota="image_stage_total"),
            "image_stage_total",
            id="stage-total",
        ),
        pytest.param(
            "failure",
            "[Errno 28] No space left on device: '/var/lib/glance/staging/img-1'",
            "staging disk",
            id="staging-full",
        ),
        pytest.param("success", "Copied 12 MiB", None, id="copied"),
        pytest.param("processing", "Copied 4 MiB", None, id="still-copying"),
        pytest.param(
            "success",
            OVER_LIMIT.format(quota="image_count_uploading"),
            None,
            id="success-whatever-it-says",
        ),
        pytest.param(
            "failure", "Store fast is read only; the copy failed", None, id="another-failure"
        ),
        pytest.param("failure", "", None, id="failure-without-words"),
    ],
)
def test_the_limit_a_copy_task_names(status: str, message: str, limit: str | None) -> None:
    assert glance_limit_hit(task(status, message)) == limit


def test_no_task_no_limit() -> None:
    """Without the tasks API volimg never sees why a copy failed: not a quota refusal."""
    assert glance_limit_hit(None) is None
