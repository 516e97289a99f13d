"""The one exception tree of volimg and the one table of exit codes.

Every error an operator can expect has a class here, a message that names what is
wrong, and a hint that says what to do next. ``ExitCode`` is the only place that maps
errors to process exit codes; the CLI's error boundary reads ``error.exit_code``.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes (README, docs/guide.md)."""

    OK = 0
    FAILED = 1  # the operation failed
    USAGE = 2  # bad usage or input: unknown volume, ambiguous name, unusable state
    PARTIAL = 3  # the image exists but at least one store copy failed
    TIMEOUT = 4  # gave up waiting; the cloud may still finish
    AUTH = 5  # authentication or permission refused
    LOCKED = 75  # another run holds the lock (sysexits EX_TEMPFAIL: try again later)
    INTERRUPTED = 130  # Ctrl-C / SIGINT, after saying what exists
    BROKEN_PIPE = 141  # stdout's reader went away (128 + SIGPIPE, as a shell reports it)
    TERMINATED = 143  # SIGTERM, after saying what exists (128 + 15, as shells report it)


def exit_code_for_signal(signum: int) -> ExitCode:
    """130 for SIGINT, 143 for SIGTERM: what a shell reports for a process they stop."""
    return ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED


class VolimgError(Exception):
    """Base of every expected failure: a one-line message plus what to do next."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def kind(self) -> str:
        """Stable name for JSON output (the class name)."""
        return type(self).__name__

    def __str__(self) -> str:
        return self.message


# --- exit 2: bad usage or input -------------------------------------------------


class InputError(VolimgError):
    """The request cannot be carried out as given; nothing was changed."""

    exit_code = ExitCode.USAGE


class ImageNameTaken(InputError):
    """The new image's name is already taken: afterwards it would name no one image."""


class UsageProblem(InputError):
    """The command line itself is wrong (reported by click, rendered by volimg in JSON)."""


class ConfigError(InputError):
    """The cloud configuration (clouds.yaml, OS_* variables) is unusable."""


class NotFoundByRef(InputError):
    """No resource of this kind has that name or ID (for the caller's project)."""

    noun = "resource"
    where = "visible to you"
    check = "openstack {noun} list"

    def __init__(self, ref: str) -> None:
        super().__init__(
            f"no {self.noun} named or with ID {ref!r} is {self.where}",
            hint=f"check the name with '{self.check.format(noun=self.noun)}', "
            "or the cloud with --os-cloud",
        )


class AmbiguousRef(InputError):
    """Several resources share the name the caller gave; the IDs tell them apart."""

    noun = "resource"

    def __init__(self, ref: str, ids: Sequence[str]) -> None:
        super().__init__(
            f"{len(ids)} {self.noun}s are named {ref!r}: {', '.join(ids)}",
            hint="pass the ID of the one you mean instead of the name",
        )
        self.ids = tuple(ids)


class VolumeNotFound(NotFoundByRef):
    noun = "volume"
    where = "visible in this project"


class AmbiguousVolume(AmbiguousRef):
    noun = "volume"


class ImageNotFound(NotFoundByRef):
    noun = "image"


class AmbiguousImage(AmbiguousRef):
    noun = "image"


class VolumeNotUploadable(InputError):
    """The volume's status forbids os-volume_upload_image (Cinder checks the same)."""


class StoreNotUsable(InputError):
    """A store named by the operator is unknown to Glance or read-only."""


class ImportMethodDisabled(InputError):
    """Glance does not offer copy-image, so the plan cannot be carried out."""


class UnsupportedMicroversion(InputError):
    """The cloud's Cinder is too old for a requested option."""


# --- exit 5: authentication or permission ---------------------------------------


class AuthError(VolimgError):
    exit_code = ExitCode.AUTH


class AuthenticationFailed(AuthError):
    """Keystone refused the credentials (401)."""


class PermissionDenied(AuthError):
    """A service refused the request for this user (403)."""


# --- exit 1: the operation failed -----------------------------------------------


class OperationFailed(VolimgError):
    exit_code = ExitCode.FAILED


class CloudError(OperationFailed):
    """A service answered with an unexpected error, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        in_flight: bool = False,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        # The request timed out: it may have reached the service and still be acted on.
        self.in_flight = in_flight


class NotFoundInCloud(CloudError):
    """A resource volimg was working on disappeared (404)."""


class ConflictInCloud(CloudError):
    """The service refused because of the resource's state (409)."""


class RequestRejected(CloudError):
    """The service found the request invalid (400)."""


class UploadFailed(OperationFailed):
    """Cinder gave up on the upload; the message quotes Cinder's user message."""


# --- exit 3 / 4 / 130 -----------------------------------------------------------


class PartialReplication(VolimgError):
    """The image exists but at least one planned store copy failed."""

    exit_code = ExitCode.PARTIAL


class ImportRejected(PartialReplication):
    """Glance refused a copy-image import: the image exists, its copies do not."""


class LockHeld(VolimgError):
    """Another volimg run holds the lock file; nothing was done."""

    exit_code = ExitCode.LOCKED


class StampFailed(PartialReplication):
    """The image is there but carries no provenance stamp: audit and retention miss it."""


class WaitTimedOut(VolimgError):
    exit_code = ExitCode.TIMEOUT


class Interrupted(VolimgError):
    """The run was stopped by SIGINT (exit 130) or SIGTERM (exit 143)."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(
        self, message: str, *, hint: str | None = None, signum: int = signal.SIGINT
    ) -> None:
        super().__init__(message, hint=hint)
        self.signum = signum
        self.exit_code = exit_code_for_signal(signum)

    @staticmethod
    def signal_of(exc: BaseException | None) -> int:
        """The signal behind a KeyboardInterrupt (volimg.signals.Interrupt), else SIGINT."""
        return int(getattr(exc, "signum", signal.SIGINT))
