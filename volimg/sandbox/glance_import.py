"""Glance's `api_image_import` task for `copy-image`, store by store.

Follows glance/async_/flows/api_image_import.py:

* the import lock `os_glance_import_task` is taken by the API before its 202;
* after a lag (the task executor picking the task up) the task goes `processing` and
  `os_glance_importing_to_stores` / `os_glance_failed_import` are updated - until then
  they still show whatever an earlier import left;
* each `_ImportToStore` copies to one store and removes it from the importing list; a
  failure with `all_stores_must_succeed=false` only adds the store to the failed list;
* with `all_stores_must_succeed=true` a failure reverts every store already done
  (their copies are deleted), marks the failed store, drops the lock and fails the task
  ("Task failed due to Internal Error", taskflow_executor.py); stores not yet reached
  are not reverted by taskflow and stay in `os_glance_importing_to_stores`;
* success: task `success` with result `{"image_id": ...}`, then the lock is dropped;
  after a failure the lock goes first and the task fails after. Both gaps last
  `timings.import_lag` (the executor's own latency), so a task can already read
  `success` while the image is still locked, as on a real cloud.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from volimg.sandbox.faults import Faults
from volimg.sandbox.http import Request
from volimg.sandbox.jobs import Jobs
from volimg.sandbox.state import MIB, Cloud, Image, ImportTask, now
from volimg.sandbox.timings import Timings

if TYPE_CHECKING:
    from volimg.sandbox.glance_base import GlanceBase

LOCK = "os_glance_import_task"
IMPORTING = "os_glance_importing_to_stores"
FAILED = "os_glance_failed_import"
INTERNAL_ERROR = "Task failed due to Internal Error"
_TASK_TTL = timedelta(hours=48)  # [task] task_time_to_live
_LOCK_EXPIRY = timedelta(minutes=60)
_BUSTABLE = ("pending", "processing", "success", "failure")
_HEARTBEAT = 0.05  # seconds between a hung task's updated_at refreshes


def merge_stores(image: Image, key: str, stores: list[str], *, subtract: bool = False) -> None:
    """_ImportActions.merge_store_list: a sorted, comma-joined set of store IDs."""
    wanted = {s for s in stores if s}
    existing = set(image.extra.get(key, "").split(","))
    merged = existing - wanted if subtract else existing | wanted
    image.extra[key] = ",".join(sorted(s for s in merged if s))


def _finish(
    task: ImportTask,
    status: str,
    *,
    message: str | None = None,
    result: dict[str, str] | None = None,
) -> None:
    task.status = status
    if message is not None:
        task.message = message
    task.result = result
    task.updated_at = now()
    task.expires_at = task.updated_at + _TASK_TTL


def _fail(task: ImportTask, message: str) -> None:
    """Fail a task unless it already ended (a preempted task keeps its own message)."""
    if task.status in ("pending", "processing"):
        _finish(task, "failure", message=message)


class ImportRunner:
    """Runs import tasks in the background, one job per task."""

    def __init__(
        self, cloud: Cloud, jobs: Jobs, faults: Faults, timings: Callable[[], Timings]
    ) -> None:
        self.cloud = cloud
        self.jobs = jobs
        self.faults = faults
        self.timings = timings
        self.live: set[str] = set()  # task IDs `hang_import` keeps alive

    def enforce_lock(self, req: Request, glance: GlanceBase, image: Image) -> ImportTask | None:
        """ImagesController._enforce_import_lock: 409 unless the holder is long dead.

        A lock whose task no longer exists is taken over at once; otherwise the task's
        `updated_at` must be at least 60 minutes old (120 while it is `pending`). The
        old task is failed "Expired lock preempted" (a finished task cannot be failed
        again and keeps its status) and the lock is dropped. Returns the task whose
        lock was taken, for `cleanup_stale_progress` once the new lock is held.
        """
        task = self.cloud.tasks.get(image.extra[LOCK])
        if task is not None:
            expiry = _LOCK_EXPIRY * (2 if task.status == "pending" else 1)
            if not (task.status in _BUSTABLE and now() - task.updated_at >= expiry):
                raise glance.fail(req, 409, "Image has active task")
            if task.status in ("pending", "processing"):
                _finish(task, "failure", message="Expired lock preempted")
            self.live.discard(task.id)
        del image.extra[LOCK]
        return task

    @staticmethod
    def cleanup_stale_progress(image: Image, task: ImportTask) -> None:
        """ImagesController._cleanup_stale_task_progress, once the new lock is held.

        Each store the old task was given leaves both progress lists; unlike the task's
        own merge_store_list this keeps the lists' order and sets both keys.
        """
        for store in task.input.get("backend", []):
            for key in (IMPORTING, FAILED):
                values = image.extra.get(key, "").split(",")
                if store in values:
                    values.remove(store)
                image.extra[key] = ",".join(values)

    def refresh_live(self) -> None:
        """Tasks that `hang_import` keeps alive touch `updated_at`, as a running copy does."""
        with self.cloud.lock:
            for task_id in self.live:
                task = self.cloud.tasks.get(task_id)
                if task is not None and task.status == "processing":
                    task.updated_at = now()

    def start(self, task_id: str, method: str, stores: list[str], must_succeed: bool) -> None:
        fault = self.faults.take_import_fault(self.cloud.tasks[task_id].image_id)
        if fault == "hang":
            self.jobs.spawn(f"import-{task_id[:8]}", lambda: self._hang(task_id, stores))
            return
        if fault is not None:
            self.jobs.spawn(f"import-{task_id[:8]}", lambda: self._abandon(task_id, stores, fault))
            return
        self.jobs.spawn(
            f"import-{task_id[:8]}", lambda: self._run(task_id, method, stores, must_succeed)
        )

    def _begin(self, task_id: str, stores: list[str]) -> ImportTask | None:
        """The executor picks the task up: `processing`, and the importing list is set."""
        if not self.jobs.sleep(self.timings().import_lag):
            return None
        with self.cloud.lock:
            task = self.cloud.tasks[task_id]
            image = self._locked_image(task)
            if image is None:
                _fail(task, INTERNAL_ERROR)
                return None
            task.status = "processing"
            task.updated_at = now()
            merge_stores(image, IMPORTING, stores)
            merge_stores(image, FAILED, stores, subtract=True)
            image.updated_at = now()
            return task

    def _hang(self, task_id: str, stores: list[str]) -> None:
        """`Faults.hang_import`: alive, holding the lock, never done."""
        task = self._begin(task_id, stores)
        if task is None:
            return
        with self.cloud.lock:
            task.message = "Copied 0 MiB"
            self.live.add(task_id)
        while self.jobs.sleep(_HEARTBEAT):
            with self.cloud.lock:
                if task_id not in self.live or self._locked_image(task) is None:
                    break
            self.refresh_live()
        with self.cloud.lock:
            self.live.discard(task_id)

    def _abandon(self, task_id: str, stores: list[str], status: str) -> None:
        """`Faults.abandon_import`: the worker dies; task and lock stay as they were."""
        if status == "processing":
            self._begin(task_id, stores)

    def _run(self, task_id: str, method: str, stores: list[str], must_succeed: bool) -> None:
        if method != "copy-image":
            if not self.jobs.sleep(self.timings().import_lag):
                return
            with self.cloud.lock:
                task = self.cloud.tasks[task_id]
                image = self._locked_image(task)
                if image is None:
                    _fail(task, INTERNAL_ERROR)
                    return
                # web-download would fetch a URL here; the sandbox has no network.
                task.status = "processing"
                _finish(task, "failure", message="Name or service not known")
                image.extra.pop(LOCK, None)
            return
        started = self._begin(task_id, stores)
        if started is None:
            return
        task = started
        if self._over_quota(task, stores):
            return
        done: list[str] = []
        for store in stores:
            if not self.jobs.sleep(self.timings().store_copy):
                return
            with self.cloud.lock:
                image = self._locked_image(task)
                if image is None:
                    _fail(task, INTERNAL_ERROR)
                    return
                if self._copy(image, store):
                    done.append(store)
                    merge_stores(image, IMPORTING, [store], subtract=True)
                    task.message = f"Copied {(image.size or 0) // MIB} MiB"
                    task.updated_at = now()
                elif must_succeed:
                    # _ImageLock.revert drops the lock; the executor fails the task after.
                    self._revert(image, done, store)
                    break
                else:
                    merge_stores(image, FAILED, [store])
                    merge_stores(image, IMPORTING, [store], subtract=True)
                image.updated_at = now()
        else:
            # _CompleteTask saves the task as succeeded, then drops the lock.
            with self.cloud.lock:
                image = self._locked_image(task)
                if image is None:
                    _fail(task, INTERNAL_ERROR)
                    return
                _finish(task, "success", result={"image_id": image.id})
            self.jobs.sleep(self.timings().import_lag)
            with self.cloud.lock:
                image = self.cloud.images.get(task.image_id)
                if image is not None and image.extra.get(LOCK) == task.id:
                    del image.extra[LOCK]
            return
        self.jobs.sleep(self.timings().import_lag)
        with self.cloud.lock:
            _fail(task, INTERNAL_ERROR)

    def _over_quota(self, task: ImportTask, stores: list[str]) -> bool:
        """glance/async_/flows/api_image_import.py ``assert_quota`` for copy-image.

        Once the task has marked the image as importing, it checks the caller's
        project's ``image_stage_total`` (delta: the image's size) and then
        ``image_count_uploading`` (delta 0: this image already counts); over a limit,
        it removes the importing stores, drops the lock and fails the task with
        Glance's 413 text (oslo.limit's ``ProjectOverLimit``).
        """
        from volimg.sandbox.glance_usage import project_usage  # it imports glance_base

        limits = self.cloud.config.glance_limits
        if not limits:
            return False
        with self.cloud.lock:
            image = self._locked_image(task)
            if image is None:
                return False
            owned = [i for i in self.cloud.images.values() if i.owner == task.owner]
            usage = project_usage(owned)
            checks = (
                ("image_stage_total", (image.size or 0) // MIB),
                ("image_count_uploading", 0),
            )
            for quota, delta in checks:
                limit = limits.get(quota, -1)
                if limit < 0 or usage[quota] + delta <= limit:
                    continue
                merge_stores(image, IMPORTING, stores, subtract=True)
                image.extra.pop(LOCK, None)
                image.updated_at = now()
                _fail(
                    task,
                    "The request returned a 413 Request Entity Too Large. This generally "
                    "means that rate limiting or a quota threshold was breached.\n\nThe "
                    f"response body:\nProject {task.owner} is over a limit for [Resource "
                    f"{quota} is over limit of {limit} due to current usage "
                    f"{usage[quota]} and delta {delta}]",
                )
                return True
        return False

    def _locked_image(self, task: ImportTask) -> Image | None:
        """The image, if it still exists and this task still holds its import lock."""
        image = self.cloud.images.get(task.image_id)
        if image is None or image.extra.get(LOCK) != task.id:
            return None
        return image

    def _copy(self, image: Image, store_id: str) -> bool:
        """Copy the image data to one store; False when that store's write fails."""
        store = self.cloud.stores[store_id]
        if self.faults.take_store_failure(store_id) or store.read_only or not image.locations:
            return False
        source = self.cloud.stores[image.locations[0]].blobs[image.id]
        store.blobs[image.id] = source
        if store_id not in image.locations:
            image.locations.append(store_id)
        return True

    def _revert(self, image: Image, done: list[str], failed: str) -> None:
        """Taskflow reverts the stores already executed, then the failed one, and drops the lock."""
        for store_id in reversed(done):
            if store_id in image.locations and len(image.locations) > 1:
                image.locations.remove(store_id)
                self.cloud.stores[store_id].blobs.pop(image.id, None)
            merge_stores(image, IMPORTING, [store_id], subtract=True)
        merge_stores(image, IMPORTING, [failed], subtract=True)
        merge_stores(image, FAILED, [failed])
        image.extra.pop(LOCK, None)
