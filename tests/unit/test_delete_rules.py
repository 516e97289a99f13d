"""What volimg may delete, on which evidence (volimg.safety), as tables.

``--keep`` deletes a whole image only when ``own_upload_of`` says why it is volimg's own
upload of that very volume; ``audit --fix`` removes a store's copy only when
``removable_copies`` names the store. Each row is a case the scenario tests reach only
through a cloud; here every rule of docs/safety.md's table is one line. Before these,
no fast test ran volimg.safety at all (the ``provenance`` mutation target,
docs/testing.md).
"""

from __future__ import annotations

import pytest

from volimg.model import Image
from volimg.provenance import Mark, Rule, Stamp, StampedBy

VOLUME = "vol-1"
NAME = "boot-vol-20261130T063000Z"


def stamp(image_id: str = "img-1", **changes: object) -> Stamp:
    fields: dict[str, object] = {
        "image_id": image_id,
        "stamped_by": StampedBy.UPLOAD,
        "stamped_at": "2026-11-30T06:30:00Z",
        "source_volume": VOLUME,
        "base_image": "base-1",
        "type_store": None,
        "rule": Rule.BASE_STORES,
    }
    fields.update(changes)
    return Stamp(**fields)  # type: ignore[arg-type]


def image(properties: dict[str, str], name: str = NAME, stores: tuple[str, ...] = ()) -> Image:
    return Image(id="img-1", name=name, status="active", stores=stores, properties=properties)


def marked(run: str = "run-7", volume: str | None = VOLUME, name: str = NAME) -> dict[str, str]:
    return Mark.for_upload(run, name, stamp("", source_volume=volume)).metadata()


# --- upload --keep: whole images ----------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "why"),
    [
        pytest.param(
            stamp().properties(),
            "stamped by volimg's upload of volume vol-1",
            id="own-upload-stamp",
        ),
        pytest.param(
            marked(),
            "marked by volimg's upload of volume vol-1 (run run-7), not finished",
            id="unfinished-upload",
        ),
        pytest.param(
            {**marked(), **stamp(stamped_by=StampedBy.GLANCE_FILTER).properties()},
            "marked by volimg's upload of volume vol-1 (run run-7), not finished",
            id="unfinished-upload-the-filter-stamped",
        ),
    ],
)
def test_keep_deletes_an_image_only_on_its_own_uploads_evidence(
    properties: dict[str, str], why: str
) -> None:
    from volimg.safety import own_upload_of

    assert own_upload_of(image(properties), VOLUME) == why


@pytest.mark.parametrize(
    "properties",
    [
        pytest.param({}, id="no-stamp"),
        pytest.param(stamp(source_volume="vol-2").properties(), id="another-volumes-upload"),
        pytest.param(stamp(stamped_by=StampedBy.ADOPT).properties(), id="adopted"),
        pytest.param(
            stamp(stamped_by=StampedBy.GLANCE_FILTER, source_volume=None).properties(),
            id="glance-filter",
        ),
        pytest.param(stamp("ancestor").properties(), id="inherited-stamp"),
        pytest.param(marked(volume="vol-2"), id="another-volumes-mark"),
        pytest.param(marked(volume=None), id="mark-of-no-volume"),
        pytest.param(marked(name="another-name"), id="mark-for-another-image"),
        pytest.param(
            {**marked(), **stamp(source_volume="vol-2").properties()},
            id="another-volumes-stamp-over-a-mark",
        ),
    ],
)
def test_keep_never_deletes_an_image_that_is_not_its_own_upload_of_the_volume(
    properties: dict[str, str],
) -> None:
    from volimg.safety import own_upload_of

    assert own_upload_of(image(properties), VOLUME) is None


# --- audit --fix: one store's copy ----------------------------------------------------------


@pytest.mark.parametrize(
    ("stores", "keep", "changes", "base_readable", "removable"),
    [
        pytest.param(("fast", "cheap"), ("fast",), {"prune": True}, True, ("cheap",), id="extra"),
        pytest.param(
            ("fast", "cheap", "archive"),
            ("fast",),
            {"prune": True},
            True,
            ("cheap", "archive"),
            id="two-extra",
        ),
        pytest.param(("fast", "cheap"), ("fast",), {}, True, (), id="no-prune-intent"),
        pytest.param(
            ("fast", "cheap"), ("fast",), {"prune": True}, False, (), id="base-not-readable"
        ),
        pytest.param(
            ("fast", "cheap"),
            ("fast",),
            {"prune": True, "base_image": None, "rule": Rule.DEFAULT_STORE},
            False,
            ("cheap",),
            id="no-base-image-to-read",
        ),
        pytest.param(
            ("fast", "cheap", "archive"),
            ("fast",),
            {"prune": True, "also_stores": ("cheap",)},
            True,
            ("archive",),
            id="also-store-kept",
        ),
        pytest.param(
            ("fast", "cheap", "archive"),
            ("fast",),
            {"prune": True, "type_store": "archive", "rule": Rule.TYPE_STORE},
            True,
            ("cheap",),
            id="type-store-kept",
        ),
        pytest.param(
            ("cheap",),
            ("fast",),
            {"prune": True},
            True,
            ("cheap",),
            id="the-last-copy-after-the-repair-copies",
        ),
        pytest.param(("cheap", "archive"), (), {"prune": True}, True, (), id="never-every-copy"),
        pytest.param(("fast",), ("fast",), {"prune": True}, True, (), id="nothing-extra"),
    ],
)
def test_audit_fix_removes_a_copy_only_as_the_stamp_and_the_rules_allow(
    stores: tuple[str, ...],
    keep: tuple[str, ...],
    changes: dict[str, object],
    base_readable: bool,
    removable: tuple[str, ...],
) -> None:
    from volimg.safety import removable_copies

    the_stamp = stamp(**changes)
    assert (
        removable_copies(
            image(the_stamp.properties(), stores=stores),
            keep=keep,
            stamp=the_stamp,
            base_readable=base_readable,
        )
        == removable
    )


def test_audit_fix_removes_nothing_of_an_unstamped_image() -> None:
    from volimg.safety import removable_copies

    unstamped = image({}, stores=("fast", "cheap"))
    assert removable_copies(unstamped, keep=("fast",), stamp=None, base_readable=True) == ()
