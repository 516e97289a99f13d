"""Simulated durations of the sandbox's asynchronous work.

Real clouds take seconds to create a volume, upload it and copy an image; clients must
poll for that. The sandbox keeps those asynchronous steps (and their ordering) but lets
the caller choose how long they take: near zero in tests, human-scale in the demo.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Timings:
    """Seconds each asynchronous step takes. Mutable: tests may change it mid-run."""

    volume_create: float = 0.2
    """`creating` -> `available` (and, from an image, the image download)."""
    volume_delete: float = 0.1
    """`deleting` -> gone."""
    upload: float = 0.5
    """Cinder's `os-volume_upload_image`: volume `uploading` until the data is in Glance."""
    store_copy: float = 0.5
    """One store of a Glance `copy-image` import."""
    import_lag: float = 0.05
    """Glance's task executor latency: after the import 202 (`os_glance_importing_to_stores`
    not yet set) and between a task's end and the release of the import lock."""

    @classmethod
    def instant(cls) -> Timings:
        """Near zero, for tests: every step still happens asynchronously, in order."""
        return cls(
            volume_create=0.005,
            volume_delete=0.005,
            upload=0.01,
            store_copy=0.005,
            import_lag=0.005,
        )

    @classmethod
    def human(cls) -> Timings:
        """Slow enough to watch: the demo's pace."""
        return cls(
            volume_create=1.0,
            volume_delete=0.5,
            upload=2.0,
            store_copy=1.5,
            import_lag=0.3,
        )
