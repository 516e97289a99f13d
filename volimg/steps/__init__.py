"""The steps every command is made of: upload, stamp, wait, replicate, prune.

``volimg upload`` (one volume or a batch), ``volimg replicate`` and ``volimg audit --fix``
compose these same functions (``volimg.executor`` holds the drivers); none of them
copies another. A ``Job`` is what one run knows about the cloud right now: each step
updates it, so whatever stops a run, the job can say what exists (image id, which
stores) and which command finishes the work.

Steps emit events and never print. Requests that create something are sent once
(``gateway.NO_RETRY``); a lost answer is reconciled by looking at what exists.

The package, by concern; a module imports only the one below it, never a sibling::

    upload    stamp    copy    prune     the steps that speak to the cloud
       |        |        |       |
       +--------+---job--+-------+       one run's state; finish, interrupted

- ``job``: ``Job``, ``finish`` (run the steps, freeze the job into an ``Outcome``),
  ``interrupted``, ``watch_in_flight`` and ``resume_command``.
- ``upload``: the upload request and its lost-answer reconciliation, the wait for
  Cinder's upload, ``wait_until_active``, ``adopt_landing``.
- ``stamp``: ``write_stamp`` and ``stamp_intact``.
- ``copy``: ``replicate`` (copy-image), following a running import, the copy wait,
  settling each store, Glance's refusals.
- ``prune``: removing copies outside the target set, never the last.

Retention is no step: it lives in ``volimg.batch``. The names below are re-exported
so that ``from volimg.steps import ...`` keeps working; volimg's own modules import
from the submodule.
"""

from volimg.steps.copy import replicate
from volimg.steps.job import Job, finish
from volimg.steps.prune import prune
from volimg.steps.stamp import stamp_intact, write_stamp
from volimg.steps.upload import adopt_landing, request_upload, wait_for_upload, wait_until_active

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
