"""volimg adopt: stamp an image volimg did not make, and never hurt one it did.

Adopt writes provenance that audit (and its --fix) then acts on, so a wrong adopt
moves data later. These tests hold the refusals (another stamp, a base that
contradicts the volume) and what a forced re-adopt keeps.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import CloudUnderTest
from tests.scenarios.conftest import Run, VolimgRunner
from tests.scenarios.test_audit import make_image, properties_of, unfinished, upload


@pytest.fixture
def conn(sandbox_cloud: CloudUnderTest) -> Iterator[Any]:
    import openstack

    connection = openstack.connect(cloud=sandbox_cloud.admin_cloud)
    yield connection
    connection.close()


def by_hand(conn: Any) -> str:
    """An image made straight in Glance (an older script's, say): no stamp."""
    return make_image(conn, f"by-hand-{uuid.uuid4().hex[:8]}", {})


def adopt(volimg: VolimgRunner, image_id: str, *args: str) -> Run:
    return volimg("adopt", image_id, *args, "-f", "json")


def refused(run: Run, *words: str) -> None:
    """Exit 2 with a one-line message and a hint; nothing else printed on stdout."""
    assert run.exit_code == 2, run
    error = run.doc["error"]
    assert error["type"] == "InputError", error
    assert "\n" not in error["message"]
    assert error["hint"], error
    for word in words:
        assert word in error["message"] + " " + error["hint"], (word, error)
    assert "Traceback" not in run.stderr


def volume_id(conn: Any, name: str) -> str:
    return str(conn.block_storage.find_volume(name, ignore_missing=False).id)


def base_id(conn: Any) -> str:
    return str(conn.image.find_image("cirros-base", ignore_missing=False).id)


@pytest.mark.parametrize("first", ["upload", "adopt", "glance-filter"])
def test_adopt_never_replaces_another_stamp_without_force(
    volimg_sandbox: VolimgRunner, conn: Any, first: str
) -> None:
    if first == "upload":
        image_id = upload(volimg_sandbox, "boot-vol")
    else:
        image_id = by_hand(conn)
        if first == "adopt":
            assert adopt(volimg_sandbox, image_id, "--base", "cirros-base").exit_code == 0
        else:
            from tests.scenarios.test_audit import set_properties
            from volimg.provenance import Rule, Stamp, StampedBy

            stamp = Stamp(
                image_id=image_id,
                stamped_by=StampedBy.GLANCE_FILTER,
                stamped_at="2026-12-01T02:00:00Z",
                source_volume=None,
                base_image=base_id(conn),
                type_store=None,
                rule=Rule.BASE_STORES,
            )
            set_properties(conn, image_id, stamp.properties())
    before = properties_of(conn, image_id)

    run = adopt(volimg_sandbox, image_id, "--base", "cirros-base", "--prune-intent")

    refused(run, "already carries a volimg stamp", "--force")
    assert properties_of(conn, image_id) == before


def test_adopt_refuses_an_unfinished_volimg_upload_and_points_to_audit_fix(
    volimg_sandbox: VolimgRunner, conn: Any
) -> None:
    image_id = unfinished(conn, "boot-vol", "boot-vol-killed", run="run-k")

    run = adopt(volimg_sandbox, image_id, "--volume", "boot-vol")

    refused(run, "unfinished", f"volimg audit --fix --image {image_id}")
    forced = adopt(volimg_sandbox, image_id, "--volume", "boot-vol", "--force")
    assert forced.exit_code == 0, forced
    props = properties_of(conn, image_id)
    assert props["volimg_stamped_by"] == "adopt"
    assert "volimg_mark" not in props  # or audit would still call it unfinished
    assert "volimg_mark_run" not in props


def test_the_volume_names_the_base_and_a_contradicting_base_is_refused(
    volimg_sandbox: VolimgRunner, conn: Any
) -> None:
    image_id = by_hand(conn)
    other_base = by_hand(conn)

    contradicting = adopt(volimg_sandbox, image_id, "--volume", "boot-vol", "--base", other_base)
    refused(contradicting, "contradicts", "--force")
    blank = adopt(volimg_sandbox, image_id, "--volume", "data-vol")
    refused(blank, "--no-base")
    none_given = adopt(volimg_sandbox, image_id)
    refused(none_given, "--base", "--no-base", "--volume")
    both = adopt(volimg_sandbox, image_id, "--base", "cirros-base", "--no-base")
    refused(both, "--no-base")
    assert "volimg_stamped_by" not in properties_of(conn, image_id)

    run = adopt(volimg_sandbox, image_id, "--volume", "boot-vol")

    assert run.exit_code == 0, run
    stamp = run.doc["stamp"]
    assert stamp["volimg_base_image"] == base_id(conn)
    assert stamp["volimg_source_volume"] == volume_id(conn, "boot-vol")
    assert stamp["volimg_rule"] == "base-image-stores"
    assert stamp["volimg_intent_by"] == "adopt"
    assert stamp["volimg_intent_at"] == stamp["volimg_stamped_at"]


def test_an_image_of_a_blank_volume_is_adopted_with_no_base(
    volimg_sandbox: VolimgRunner, conn: Any
) -> None:
    image_id = by_hand(conn)

    run = adopt(volimg_sandbox, image_id, "--no-base", "--volume", "data-vol")

    assert run.exit_code == 0, run
    assert run.doc["stamp"]["volimg_base_image"] == "none"
    assert run.doc["stamp"]["volimg_rule"] == "default-store"
    audited = volimg_sandbox("audit", "--image", image_id, "-f", "json")
    assert audited.exit_code == 0, audited
    assert audited.doc["findings"][0]["finding"] == "ok"


def test_a_forced_readopt_keeps_what_it_does_not_name(
    volimg_sandbox: VolimgRunner, conn: Any
) -> None:
    image_id = by_hand(conn)
    first = adopt(volimg_sandbox, image_id, "--volume", "boot-vol", "--prune-intent")
    assert first.exit_code == 0, first

    again = adopt(volimg_sandbox, image_id, "--base", "cirros-base", "--force")

    assert again.exit_code == 0, again
    stamp = again.doc["stamp"]
    assert stamp["volimg_source_volume"] == volume_id(conn, "boot-vol")  # kept
    assert stamp["volimg_prune"] == "true"  # kept: --prune-intent was not given
    assert stamp["volimg_base_image"] == base_id(conn)

    off = adopt(volimg_sandbox, image_id, "--no-prune-intent", "--force")

    assert off.exit_code == 0, off
    assert off.doc["stamp"]["volimg_prune"] == "false"
    assert off.doc["stamp"]["volimg_base_image"] == base_id(conn)  # kept
    assert off.doc["stamp"]["volimg_source_volume"] == volume_id(conn, "boot-vol")


def test_a_forced_adopt_of_volimgs_own_upload_keeps_its_recorded_intent(
    volimg_sandbox: VolimgRunner, conn: Any
) -> None:
    image_id = upload(volimg_sandbox, "boot-vol", "--no-replicate", "--also-store", "archive")

    run = adopt(volimg_sandbox, image_id, "--force")

    assert run.exit_code == 0, run
    stamp = run.doc["stamp"]
    assert stamp["volimg_stamped_by"] == "adopt"
    assert stamp["volimg_also_stores"] == "archive"
    assert stamp["volimg_replicate"] == "false"
    assert stamp["volimg_rule"] == "default-store"
    assert volimg_sandbox("audit", "--image", image_id).exit_code == 0


def test_an_inherited_stamp_is_not_another_stamp_and_does_not_leak_into_the_adopt(
    volimg_sandbox: VolimgRunner, conn: Any
) -> None:
    # Cinder copies an ancestor's stamp onto images made from volumes made from it.
    from tests.scenarios.test_audit import set_properties

    run = volimg_sandbox("upload", "boot-vol", "--once-per", "day", "-f", "json")
    assert run.exit_code == 0, run
    ancestor = run.doc["volumes"][0]["image"]["id"]
    inherited = {
        k: v for k, v in properties_of(conn, ancestor).items() if str(k).startswith("volimg_")
    }
    assert "volimg_period" in inherited
    image_id = by_hand(conn)
    set_properties(conn, image_id, {k: str(v) for k, v in inherited.items()})

    run = adopt(volimg_sandbox, image_id, "--base", "cirros-base")

    assert run.exit_code == 0, run
    props = properties_of(conn, image_id)
    assert props["volimg_image"] == image_id
    assert "volimg_period" not in props  # the ancestor's, not this image's


def test_adopt_help_says_what_it_refuses(volimg_sandbox: VolimgRunner) -> None:
    text = " ".join(volimg_sandbox("adopt", "--help").stdout.split())
    for option in ("--base", "--no-base", "--volume", "--prune-intent", "--no-prune-intent"):
        assert option in text
    assert "--force" in text
    assert "Another stamp is never replaced without --force" in text
