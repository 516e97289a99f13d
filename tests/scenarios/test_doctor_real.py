"""``volimg doctor`` against real Keystone 30, Glance 33 and Cinder 29 (the real tier).

Two failing cases the real services can be put in: a volume type whose
``image_service:store_id`` names a store Glance does not have (real Cinder takes it
when the type is created with it: cinder/api/contrib/types_manage.py checks no store;
only setting the spec on an existing type is checked), and ``copy-image`` missing from
glance-api.conf's ``enabled_import_methods`` (tests/realcloud/stack.py
``--glance-import-methods`` renders it and restarts Glance; the test brings the normal
config back with a plain ``up``, which restarts Glance again). Plus one run on the
stack as it is, whose rows must agree with what the stack is known to be.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REALCLOUD_STATE, REPO_ROOT, CloudUnderTest, _use
from tests.scenarios.conftest import Run, VolimgRunner, make_runner

pytestmark = pytest.mark.realcloud

STACK_PY = REPO_ROOT / "tests" / "realcloud" / "stack.py"
IMPORT_METHODS_VARIABLE = "VOLIMG_REALCLOUD_GLANCE_IMPORT_METHODS"


@pytest.fixture
def real(realstack: CloudUnderTest, monkeypatch: pytest.MonkeyPatch) -> CloudUnderTest:
    return _use(realstack, monkeypatch)


@pytest.fixture
def volimg_real(real: CloudUnderTest) -> VolimgRunner:
    return make_runner(real)


@pytest.fixture
def admin(real: CloudUnderTest) -> Iterator[Any]:
    import openstack

    conn = openstack.connect(cloud=real.admin_cloud)
    yield conn
    conn.close()


def doctor(volimg: VolimgRunner, *args: str) -> Run:
    return volimg("doctor", *args, "-f", "json")


def rows(run: Run, check: str) -> dict[str, dict[str, Any]]:
    return {row["subject"]: row for row in run.doc["checks"] if row["check"] == check}


def stack_up(**environment: str) -> None:
    """``stack.py up`` with these variables (and without the import-methods one unless
    given): restarts the services whose rendered configs changed."""
    env = {k: v for k, v in os.environ.items() if k != IMPORT_METHODS_VARIABLE}
    proc = subprocess.run(
        [sys.executable, str(STACK_PY), "up", "--state", str(REALCLOUD_STATE)],
        env={**env, **environment},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_the_real_stack_as_seeded(volimg_real: VolimgRunner) -> None:
    run = doctor(volimg_real)

    assert run.exit_code in (0, 3), run
    assert run.doc["command"] == "doctor"
    (multi,) = rows(run, "multi-store").values()
    assert multi["status"] == "ok"
    assert "fast (default), cheap, archive" in multi["detail"]
    (copy,) = rows(run, "copy-image").values()
    assert copy["status"] == "ok"
    types = rows(run, "volume-type-store")
    assert types["standard"]["status"] == "ok"
    assert types["pinned-archive"]["status"] == "ok"
    (base,) = rows(run, "base-image-stores").values()
    assert base["status"] == "ok"
    (quota,) = rows(run, "glance-quota").values()
    assert quota["status"] == "skipped"  # Glance 33 with use_keystone_limits off: {"usage": {}}
    (cinder,) = rows(run, "cinder-microversions").values()
    assert "to 3.71" in cinder["detail"]


def test_a_volume_type_whose_store_glance_lacks_fails(
    volimg_real: VolimgRunner, admin: Any
) -> None:
    name = f"doctor-wrong-store-{uuid.uuid4().hex[:8]}"
    vtype = admin.block_storage.create_type(
        name=name, extra_specs={"image_service:store_id": "nowhere"}
    )
    try:
        assert (vtype.extra_specs or {}).get("image_service:store_id") == "nowhere"

        run = doctor(volimg_real, "--volume-type", name)

        assert run.exit_code == 3, run
        assert run.doc["result"] == "fail"
        row = rows(run, "volume-type-store")[name]
        assert row["status"] == "fail"
        assert "image_service:store_id=nowhere" in row["detail"]
        assert f"image_service:store_id=STORE {name}" in row["fix"]
    finally:
        admin.block_storage.delete_type(vtype)


def test_copy_image_disabled_in_glance_api_conf_fails(volimg_real: VolimgRunner) -> None:
    stack_up(**{IMPORT_METHODS_VARIABLE: "glance-direct,web-download"})
    try:
        run = doctor(volimg_real)
    finally:
        stack_up()  # the normal config again: Glance restarts with copy-image

    assert run.exit_code == 3, run
    (row,) = rows(run, "copy-image").values()
    assert row["status"] == "fail"
    assert "(glance-direct, web-download)" in row["detail"]
    assert "enabled_import_methods: add copy-image" in row["fix"]
    (policy,) = rows(run, "copy-image-policy").values()
    assert policy["status"] == "skipped"
    again = doctor(volimg_real)
    (restored,) = rows(again, "copy-image").values()
    assert restored["status"] == "ok", again
