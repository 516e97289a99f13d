"""tests/realcloud/stack.py: when `up` restarts a running service (no services started).

The real tier's Glance must run the paste filter of the checkout under test, so `up`
restarts a service whose rendered configs or loaded code changed since it started.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

STACK_PY = Path(__file__).resolve().parent.parent / "realcloud" / "stack.py"


@pytest.fixture(scope="module")
def stack_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("realcloud_stack", STACK_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def make_stack(module: ModuleType, state: Path, **kwargs: object) -> object:
    (state / "run").mkdir(parents=True, exist_ok=True)
    return module.Stack(state=state, port_base=26000, python=sys.executable, **kwargs)


def test_a_stack_started_before_digests_were_recorded_restarts_everything(
    stack_module: ModuleType, tmp_path: Path
) -> None:
    stack = make_stack(stack_module, tmp_path)
    assert stack_module.stale_services(stack) == ["keystone", "glance", "cinder"]
    stack_module.record_started(stack, stack_module.SERVICES)
    assert stack_module.stale_services(stack) == []


def test_turning_the_filter_off_restarts_glance_alone(
    stack_module: ModuleType, tmp_path: Path
) -> None:
    stack_module.record_started(make_stack(stack_module, tmp_path), stack_module.SERVICES)
    off = make_stack(stack_module, tmp_path, glance_filter=False)
    assert stack_module.stale_services(off) == ["glance"]
    paste = stack_module.rendered(off)["glance-api-paste.ini"][1]
    assert (
        "[filter:volimg_stamp]\npaste.filter_factory = volimg.glance_filter:filter_factory\nenabled = false\n"
        in paste
    )


def test_a_change_of_the_filters_code_restarts_glance(
    stack_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(stack_module, tmp_path)
    stack_module.record_started(stack, stack_module.SERVICES)
    real_read = Path.read_bytes

    def edited(path: Path) -> bytes:
        data = real_read(path)
        return data + b"# edited\n" if path.name == "glance_filter.py" else data

    monkeypatch.setattr(Path, "read_bytes", edited)
    assert stack_module.stale_services(stack) == ["glance"]


def test_the_checkouts_path_does_not_count(
    stack_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worktrees that share one stack with the same code must not restart it."""
    stack = make_stack(stack_module, tmp_path / "state")
    stack_module.record_started(stack, stack_module.SERVICES)
    # The same files in another checkout.
    other = tmp_path / "other-checkout"
    shutil.copytree(STACK_PY.parent, other / "tests" / "realcloud")
    shutil.copytree(STACK_PY.parent.parent.parent / "volimg", other / "volimg")
    monkeypatch.setattr(stack_module, "HERE", other / "tests" / "realcloud")
    monkeypatch.setattr(stack_module, "TEMPLATES", other / "tests" / "realcloud" / "templates")
    assert stack_module.rendered(stack)["glance-uwsgi.ini"][1].count(str(other)) == 1
    assert stack_module.stale_services(stack) == []


def test_render_copies_the_filters_three_files_for_glance(
    stack_module: ModuleType, tmp_path: Path
) -> None:
    stack = make_stack(stack_module, tmp_path)
    stack_module.render(stack)
    pylib = tmp_path / "glance" / "pylib" / "volimg"
    assert sorted(p.name for p in pylib.iterdir()) == sorted(stack_module.FILTER_FILES)
    uwsgi = (tmp_path / "glance" / "uwsgi.ini").read_text()
    assert f"pythonpath = {tmp_path}/glance/pylib\n" in uwsgi


def test_the_default_import_methods_render_as_before(
    stack_module: ModuleType, tmp_path: Path
) -> None:
    """A running stack must not restart for the option's sake (same rendered text)."""
    conf = stack_module.rendered(make_stack(stack_module, tmp_path))["glance-api.conf"][1]
    assert "\nenabled_import_methods = [glance-direct,web-download,copy-image]\n" in conf


def test_import_methods_without_copy_image_restart_glance_alone(
    stack_module: ModuleType, tmp_path: Path
) -> None:
    """What volimg doctor's real test uses: `up --glance-import-methods ...`, then `up`."""
    stack_module.record_started(make_stack(stack_module, tmp_path), stack_module.SERVICES)
    without = make_stack(
        stack_module, tmp_path, glance_import_methods=("glance-direct", "web-download")
    )
    assert stack_module.stale_services(without) == ["glance"]
    conf = stack_module.rendered(without)["glance-api.conf"][1]
    assert "\nenabled_import_methods = [glance-direct,web-download]\n" in conf
    stack_module.record_started(without, ["glance"])
    assert stack_module.stale_services(make_stack(stack_module, tmp_path)) == ["glance"]


def test_the_import_methods_option_and_its_variable(
    stack_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []
    monkeypatch.setattr(stack_module, "cmd_status", lambda stack: seen.append(stack) or 0)
    monkeypatch.setenv("VOLIMG_REALCLOUD_GLANCE_IMPORT_METHODS", "glance-direct, web-download")
    assert stack_module.main(["status", "--state", str(tmp_path)]) == 0
    assert seen[-1].glance_import_methods == ("glance-direct", "web-download")  # type: ignore[attr-defined]
    monkeypatch.delenv("VOLIMG_REALCLOUD_GLANCE_IMPORT_METHODS")
    assert stack_module.main(["status", "--state", str(tmp_path)]) == 0
    assert seen[-1].glance_import_methods == stack_module.DEFAULT_IMPORT_METHODS  # type: ignore[attr-defined]
