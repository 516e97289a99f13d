"""Starting, configuring and stopping a sandbox; the clouds.yaml it writes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from volimg.sandbox import Sandbox, SandboxBindRefused, Timings


def test_starting_takes_well_under_a_second() -> None:
    began = time.monotonic()
    with Sandbox(timings=Timings.instant()) as sb:
        elapsed = time.monotonic() - began
        assert requests.get(f"{sb.url}/identity", timeout=5).status_code == 300
    assert elapsed < 1.0, elapsed


def test_importing_does_no_work_and_no_openstacksdk() -> None:
    code = "import sys, threading, volimg.sandbox; assert 'openstack' not in sys.modules; assert threading.active_count() == 1"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.com", "::"])
def test_non_loopback_hosts_are_refused_before_binding(host: str) -> None:
    with pytest.raises(SandboxBindRefused) as refused:
        Sandbox(host=host)
    assert isinstance(refused.value, ValueError)
    assert "allow_remote" in str(refused.value)


def test_allow_remote_binds_every_interface() -> None:
    with Sandbox(host="0.0.0.0", allow_remote=True, seed="empty") as sb:
        assert sb.url.startswith("http://127.0.0.1:")
        assert requests.get(f"{sb.url}/image/", timeout=5).status_code == 300


def test_localhost_is_loopback() -> None:
    with Sandbox(host="localhost", seed="empty") as sb:
        assert requests.get(f"{sb.url}/volume/", timeout=5).status_code == 300


def test_port_zero_picks_a_free_port_and_stop_releases_it() -> None:
    sb = Sandbox(seed="empty").start()
    port = sb.port
    assert port > 0
    sb.stop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # free again


def test_an_explicit_port_is_used() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Sandbox(port=port, seed="empty") as sb:
        assert sb.url == f"http://127.0.0.1:{port}"


def test_unknown_seed_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="seed"):
        Sandbox(seed="galaxy")


def test_clouds_yaml_has_an_admin_and_a_member_cloud() -> None:
    with Sandbox(seed="empty") as sb:
        config = yaml.safe_load(sb.clouds_yaml.read_text())
        clouds = config["clouds"]
        assert set(clouds) == {"sandbox", "sandbox-member"}
        assert (sb.admin_cloud, sb.member_cloud) == ("sandbox", "sandbox-member")
        admin = clouds["sandbox"]
        assert admin["auth"]["auth_url"] == sb.auth_url == f"{sb.url}/identity/v3"
        assert admin["auth"]["username"] == sb.admin.username
        assert admin["auth"]["password"] == sb.admin.password
        assert admin["region_name"] == "RegionOne"
        assert clouds["sandbox-member"]["auth"]["username"] == sb.member.username
        assert sb.clouds_yaml.stat().st_mode & 0o077 == 0  # it holds passwords
        path = sb.clouds_yaml
    assert not path.exists()  # a temporary clouds.yaml goes with the sandbox


def test_clouds_yaml_can_be_written_where_asked(tmp_path: Path) -> None:
    target = tmp_path / "clouds.yaml"
    with Sandbox(seed="empty", clouds_yaml=target) as sb:
        assert sb.clouds_yaml == target
        assert "sandbox-member" in target.read_text()
    assert target.exists()  # a file the caller asked for stays


def test_a_clouds_yaml_in_a_missing_directory_is_refused_not_made(tmp_path: Path) -> None:
    target = tmp_path / "conf" / "clouds.yaml"
    with pytest.raises(FileNotFoundError) as refused:
        Sandbox(seed="empty", clouds_yaml=target).start()
    assert refused.value.filename == str(target)
    assert not (tmp_path / "conf").exists()


def test_start_and_stop_are_idempotent() -> None:
    sb = Sandbox(seed="empty")
    assert sb.start() is sb.start()
    sb.stop()
    sb.stop()


def test_connection_settings_need_a_started_sandbox() -> None:
    sb = Sandbox(seed="empty")
    with pytest.raises(RuntimeError):
        _ = sb.clouds_yaml


def test_empty_seed_has_identities_and_stores_only() -> None:
    with Sandbox(seed="empty") as sb:
        cloud = sb.cloud
        assert set(cloud.stores) == {"fast", "cheap", "archive"}
        assert cloud.images == {}
        assert cloud.volumes == {}
        assert [t.name for t in cloud.volume_types.values()] == ["__DEFAULT__"]


def test_demo_seed_matches_the_documentation() -> None:
    with Sandbox(seed="demo") as sb:
        cloud = sb.cloud
        assert cloud.default_store == "fast"
        base = cloud.find_image("cirros-base")
        assert (base.visibility, base.disk_format, base.container_format, base.status) == (
            "public",
            "qcow2",
            "bare",
            "active",
        )
        assert base.stores == ("cheap", "archive")
        assert base.extra["os_distro"] == "cirros"
        assert base.extra["hw_disk_bus"] == "virtio"
        assert base.extra["os_glance_failed_import"] == ""  # left by the copy to archive
        assert cloud.find_volume_type("pinned-archive").extra_specs == {
            "image_service:store_id": "archive"
        }
        assert cloud.find_volume_type("standard").extra_specs == {}
        assert sorted(v.name or "" for v in cloud.volumes.values()) == [
            "boot-vol",
            "busy-vol",
            "data-vol",
            "pinned-vol",
            "twin",
            "twin",
        ]
        assert cloud.find_volume("busy-vol").status == "in-use"
        assert cloud.find_volume("busy-vol").attachments
        assert cloud.find_volume("boot-vol").image_metadata["image_id"] == base.id
        assert cloud.find_volume("data-vol").image_metadata == {}
        admin_project = cloud.find_user(sb.admin.username).default_project_id
        assert {v.project_id for v in cloud.volumes.values()} == {admin_project}
        with pytest.raises(KeyError, match="2 volumes"):
            cloud.find_volume("twin")
        assert len(cloud.volumes_named("twin")) == 2


def test_read_only_stores_are_http_stores() -> None:
    with Sandbox(seed="empty", read_only_stores=("web", "archive")) as sb:
        assert sb.cloud.stores["web"].read_only
        assert sb.cloud.stores["archive"].read_only
        assert not sb.cloud.stores["fast"].read_only


def test_timings_presets() -> None:
    instant, human = Timings.instant(), Timings.human()
    assert max(vars(instant).values()) < 0.05
    assert 1.5 <= human.upload <= 3
    assert 1 <= human.store_copy <= 2


def test_serve_forever_stops_cleanly_on_ctrl_c() -> None:
    script = (
        "from volimg.sandbox import Sandbox\n"
        "sb = Sandbox(seed='empty')\n"
        "sb.start()\n"
        "print(sb.url, flush=True)\n"
        "sb.serve_forever()\n"
        "print('stopped', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert requests.get(f"{url}/identity", timeout=5).status_code == 300
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out.strip() == "stopped"


def test_a_failed_start_releases_the_port(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sb = Sandbox(seed="empty", port=port, clouds_yaml=blocker / "clouds.yaml")
    with pytest.raises(OSError, match="a-file"):
        sb.start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # released
    sb.stop()  # nothing to stop: harmless


def test_a_stopped_sandbox_does_not_restart() -> None:
    sb = Sandbox(seed="empty").start()
    sb.stop()
    with pytest.raises(RuntimeError, match="new one"):
        sb.start()


def test_the_demo_seed_holds_the_two_earlier_volimg_images_docs_sandbox_md_names() -> None:
    from volimg.provenance import TAG, Stamp
    from volimg.sandbox import Sandbox

    with Sandbox(seed="demo") as sb:
        boot = sb.cloud.find_volume("boot-vol")
        earlier = [i for i in sb.cloud.images.values() if TAG in i.tags]
        stores = sorted(tuple(i.locations) for i in earlier)
        stamps = [Stamp.from_properties(i.id, i.extra) for i in earlier]
    assert stores == [("fast", "cheap"), ("fast", "cheap", "archive")]
    assert all(s is not None and s.source_volume == boot.id for s in stamps)
