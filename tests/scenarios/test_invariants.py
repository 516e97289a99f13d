"""volimg's promises to an unattended operator, checked as invariants by a machine.

Scenario tests walk one path. Here hypothesis' rule-based state machine walks many:
its rules are volimg commands (one upload, a batch with and without ``--once-per`` and
``--keep``, ``replicate``, ``adopt``, ``audit --fix``), real ``volimg`` processes killed
with SIGKILL or SIGTERM at the moment a chosen request reaches the cloud, injected
faults, and what other people do to the same cloud (retire a base image, remove one
store's copy, upload a volume with another client). After every step it checks:

1. every image a volimg command created is, once a later volimg command finished it,
   stamped as volimg's own upload and listed by ``volimg audit``;
2. no volimg command deleted an image, or one store's copy of an image, that
   docs/safety.md does not allow it to delete;
3. with ``--once-per``, at most one image per volume and period;
4. after ``audit --fix`` exits 0, a second ``audit`` finds nothing to fix;
5. every next step volimg printed, when run, succeeds.

The default run is bounded (``VOLIMG_INVARIANT_EXAMPLES``, default 10 examples of at
most 10 steps); docs/testing.md says how the long run is started and what it found.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.scenarios.next_steps import _COMMAND
from volimg.cli import cli
from volimg.context import AppContext
from volimg.provenance import Stamp, StampedBy, unfinished_mark
from volimg.sandbox import Sandbox, Timings

EXAMPLES = int(os.environ.get("VOLIMG_INVARIANT_EXAMPLES", "10"))
STEPS = int(os.environ.get("VOLIMG_INVARIANT_STEPS", "10"))
RULES_RUN: Counter[str] = Counter()  # how often each rule ran: the machine must not idle
SHRINK = os.environ.get("VOLIMG_INVARIANT_SHRINK", "1") != "0"
STORES = ("fast", "cheap", "archive")
TEMPLATE = "retired-template"  # a base image the operator may delete


@dataclass
class Seen:
    """One image as the checks last saw it."""

    id: str
    name: str
    stores: frozenset[str]
    protected: bool
    properties: dict[str, str]

    @property
    def stamp(self) -> Stamp | None:
        return Stamp.from_properties(self.id, self.properties)

    @property
    def volimgs_own(self) -> bool:
        """volimg's own upload: stamped as such, or born with a mark that claims it."""
        stamp = self.stamp
        if stamp is not None and stamp.is_own_upload:
            return True
        return unfinished_mark(self.id, self.name, self.properties) is not None


@dataclass
class Ledger:
    """What the machine knows beyond the cloud: who made what."""

    foreign: set[str] = field(default_factory=set)  # made or adopted by others
    created_by_volimg: set[str] = field(default_factory=set)
    operator_deleted: set[str] = field(default_factory=set)
    operator_removed_copies: set[tuple[str, str]] = field(default_factory=set)


CORE = {
    "id", "name", "status", "stores", "protected", "tags", "visibility", "owner", "size",
    "virtual_size", "checksum", "os_hash_algo", "os_hash_value", "disk_format",
    "container_format", "created_at", "updated_at", "min_disk", "min_ram", "file", "self",
    "schema", "direct_url", "locations", "os_hidden",
}  # fmt: skip


def _images(conn: Any) -> dict[str, Seen]:
    """Every image, as Glance's own JSON shows it (``stores`` is a comma-joined string)."""
    found = {}
    path = "/images?limit=200"
    while path:
        page = conn.image.get(path).json()
        for raw in page["images"]:
            props = {k: str(v) for k, v in raw.items() if k not in CORE}
            stores = frozenset(s for s in (raw.get("stores") or "").split(",") if s)
            found[raw["id"]] = Seen(
                raw["id"], raw.get("name") or "", stores, bool(raw.get("protected")), props
            )
        path = page.get("next", "").removeprefix("/v2")
    return found


class VolimgUnderCron(RuleBasedStateMachine):
    """One sandbox cloud per example, as an operator's cron would meet it."""

    def __init__(self) -> None:
        super().__init__()
        self.sandbox = Sandbox(seed="demo", timings=Timings.instant()).start()
        import openstack

        self.clouds_yaml = str(self.sandbox.clouds_yaml)
        os.environ["OS_CLIENT_CONFIG_FILE"] = self.clouds_yaml
        self.conn = openstack.connect(cloud=self.sandbox.admin_cloud)
        self.ledger = Ledger()
        self.volumes: list[str] = []
        self.before: dict[str, Seen] = {}
        self.last_fix_clean = False

    # --- set-up -----------------------------------------------------------------------

    @initialize()
    def make_volumes(self) -> None:
        base = self.conn.image.find_image("cirros-base", ignore_missing=False)
        template = self.conn.image.create_image(
            name=TEMPLATE, disk_format="raw", container_format="bare", data=b"\0" * 1024,
            allow_duplicates=True,
        )  # fmt: skip
        self.ledger.foreign.update({base.id, template.id})
        made = []
        for label, image_id in (
            ("from-base", base.id),
            ("from-template", template.id),
            ("blank", None),
        ):
            volume = self.conn.block_storage.create_volume(
                size=1, name=f"inv-{label}", image_id=image_id
            )
            made.append(volume)
        for volume in made:
            self.conn.block_storage.wait_for_status(volume, "available", wait=30, interval=0.02)
        self.volumes = [v.name for v in made]
        self.before = _images(self.conn)
        self.ledger.foreign.update(self.before)

    def teardown(self) -> None:
        try:
            self._final_checks()
        finally:
            self.conn.close()
            self.sandbox.stop()

    # --- running volimg ---------------------------------------------------------------

    def volimg(self, *args: str) -> tuple[int, dict[str, Any] | None, str]:
        app = AppContext(poll_interval=0.01)
        result = CliRunner().invoke(
            cli, ["--os-cloud", self.sandbox.admin_cloud, *args], obj=app, catch_exceptions=False
        )
        doc = None
        if "-f" in args and result.stdout.strip():
            lines = result.stdout.strip().splitlines()
            doc = (
                json.loads(result.stdout)
                if args[args.index("-f") + 1] == "json"
                else json.loads(lines[-1])
            )
        assert "Traceback" not in result.stderr, result.stderr
        return result.exit_code, doc, result.stderr

    def volimg_step(self, *args: str) -> tuple[int, dict[str, Any] | None, str]:
        """A volimg command, with the delete and creation checks around it."""
        before = _images(self.conn)
        code, doc, err = self.volimg(*args)
        self._check_step(before, _images(self.conn), args)
        if doc is not None:
            self._follow_next_steps(doc)
        return code, doc, err

    def _follow_next_steps(self, doc: dict[str, Any]) -> None:
        steps = list(doc.get("next_steps") or [])
        for volume in doc.get("volumes") or []:
            steps += volume.get("next_steps") or []
        if steps:
            # The steps say "once the cause is fixed": the operator fixes it first.
            self.sandbox.faults.clear()
        for step in steps:
            found = _COMMAND.search(step)
            assert found is not None, f"next step {step!r} holds no volimg command"
            words = found.group(1).split()[1:]
            before = _images(self.conn)
            code, _, err = self.volimg(*words)
            self._check_step(before, _images(self.conn), tuple(words))
            assert code == 0 or "active" in step, f"printed step {step!r} failed ({code}): {err}"

    # --- rules: volimg ----------------------------------------------------------------

    @rule(
        volume=st.sampled_from(["inv-from-base", "inv-from-template", "inv-blank"]),
        options=st.lists(
            st.sampled_from(["--prune", "--no-replicate", "--also-store=archive", "--keep=1"]),
            unique=True,
            max_size=2,
        ),
    )
    def upload_one(self, volume: str, options: list[str]) -> None:
        RULES_RUN["upload_one"] += 1
        code, _doc, err = self.volimg_step("upload", volume, *options, "-f", "json")
        assert code in (0, 3), err

    @rule(volume=st.sampled_from(["inv-from-base", "inv-from-template", "inv-blank"]))
    def upload_without_waiting(self, volume: str) -> None:
        """``--no-wait``: the image is left to Cinder, born with volimg's mark."""
        RULES_RUN["upload_without_waiting"] += 1
        code, _, err = self.volimg_step("upload", volume, "--no-wait", "-f", "json")
        assert code == 0, err
        self._settle()

    @rule(once_per=st.booleans(), keep=st.sampled_from([None, 1, 2]))
    def nightly_batch(self, once_per: bool, keep: int | None) -> None:
        RULES_RUN["nightly_batch"] += 1
        args = ["upload", *self.volumes, "-f", "json"]
        if once_per:
            args += ["--once-per", "day"]
        if keep is not None:
            args += ["--keep", str(keep)]
        code, _doc, err = self.volimg_step(*args)
        assert code in (0, 1, 3), err

    @rule(
        moment=st.sampled_from(["upload", "stamp", "copy"]),
        how=st.sampled_from([signal.SIGKILL, signal.SIGTERM, signal.SIGINT]),
    )
    def killed_nightly_batch(self, moment: str, how: signal.Signals) -> None:
        """A real process, killed when the request it is meant to interrupt arrives."""
        RULES_RUN["killed_nightly_batch"] += 1
        before = _images(self.conn)
        self.sandbox.timings.upload = 0.4
        self.sandbox.timings.store_copy = 0.3
        seen = len(self.sandbox.requests)
        proc = subprocess.Popen(
            [sys.executable, "-m", "volimg", "--os-cloud", self.sandbox.admin_cloud, "upload",
             *self.volumes, "--once-per", "day", "--keep", "1", "-f", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OS_CLIENT_CONFIG_FILE": self.clouds_yaml},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                if any(_is_moment(r, moment) for r in list(self.sandbox.requests)[seen:]):
                    break
                time.sleep(0.005)
            proc.send_signal(how)
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self.sandbox.timings = Timings.instant()
        # Let Cinder finish what the dead run asked for before anything is judged.
        self._settle()
        self._check_step(before, _images(self.conn), ("killed", *proc.args[3:]))

    @rule(pick=st.integers(0, 99), store=st.sampled_from(STORES))
    def replicate_to_one_more_store(self, pick: int, store: str) -> None:
        RULES_RUN["replicate_to_one_more_store"] += 1
        # Draw first, then look: what the cloud holds must not change what is drawn.
        ours = sorted(
            (i for i in _images(self.conn).values() if i.stamp and i.stamp.is_own_upload),
            key=lambda i: i.name,
        )
        if not ours:
            return
        image = ours[pick % len(ours)]
        if store in image.stores:
            return
        code, _, err = self.volimg_step("replicate", image.id, "--store", store, "-f", "json")
        assert code in (0, 3), err  # 3: an armed store fault failed the copy

    @rule()
    def adopt_an_image_made_by_hand(self) -> None:
        RULES_RUN["adopt_an_image_made_by_hand"] += 1
        image_id = self._upload_with_another_client("inv-from-base", "by-hand")
        base = self.conn.image.find_image("cirros-base", ignore_missing=False)
        code, _, err = self.volimg_step(
            "adopt", image_id, "--volume", "inv-from-base", "--base", base.id, "-f", "json"
        )
        assert code == 0, err

    @rule()
    def audit_fix(self) -> None:
        RULES_RUN["audit_fix"] += 1
        code, _doc, err = self.volimg_step("audit", "--fix", "-f", "json")
        assert code in (0, 3), err
        if code == 0:
            # 4. a clean fix leaves nothing to fix
            again, doc2, _err2 = self.volimg("audit", "-f", "json")
            assert again == 0, f"audit after a clean --fix still finds work: {doc2}"

    # --- rules: faults and other people -----------------------------------------------

    @rule(store=st.sampled_from(["cheap", "archive"]))
    def a_store_copy_fails_once(self, store: str) -> None:
        RULES_RUN["a_store_copy_fails_once"] += 1
        self.sandbox.faults.fail_store_copy(store, times=1)

    @precondition(lambda self: bool(self.conn.image.find_image(TEMPLATE)))
    @rule()
    def retire_the_template(self) -> None:
        RULES_RUN["retire_the_template"] += 1
        template = self.conn.image.find_image(TEMPLATE, ignore_missing=False)
        self.conn.image.delete_image(template)
        self.ledger.operator_deleted.add(template.id)

    @rule(pick=st.integers(0, 99), which=st.integers(0, 2))
    def remove_one_store_copy(self, pick: int, which: int) -> None:
        RULES_RUN["remove_one_store_copy"] += 1
        candidates = sorted(
            (i for i in _images(self.conn).values() if len(i.stores) > 1), key=lambda i: i.name
        )
        if not candidates:
            return
        image = candidates[pick % len(candidates)]
        store = sorted(image.stores)[which % len(image.stores)]
        self.conn.image.delete(f"/stores/{store}/{image.id}")
        self.ledger.operator_removed_copies.add((image.id, store))

    @rule(volume=st.sampled_from(["inv-from-base", "inv-from-template", "inv-blank"]))
    def upload_with_another_client(self, volume: str) -> None:
        RULES_RUN["upload_with_another_client"] += 1
        self._upload_with_another_client(volume, "other-client")

    def _upload_with_another_client(self, volume_name: str, label: str) -> str:
        volume = self.conn.block_storage.find_volume(volume_name, ignore_missing=False)
        self._settle()
        name = f"{label}-{uuid.uuid4().hex[:6]}"
        answer = self.conn.block_storage.post(
            f"/volumes/{volume.id}/action",
            json={"os-volume_upload_image": {"image_name": name, "force": True}},
        )
        image_id = answer.json()["os-volume_upload_image"]["image_id"]
        self.ledger.foreign.add(image_id)
        self._settle()
        return image_id

    # --- checks -----------------------------------------------------------------------

    def _settle(self) -> None:
        """Wait until no volume is uploading and no image is being filled."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            busy = [v for v in self.conn.block_storage.volumes() if v.status == "uploading"]
            filling = [
                i for i in self.conn.image.images() if i.status in ("queued", "saving", "importing")
            ]
            if not busy and not filling:
                return
            time.sleep(0.02)

    def _check_step(
        self, before: dict[str, Seen], after: dict[str, Seen], what: tuple[str, ...]
    ) -> None:
        for image_id in set(after) - set(before):
            if image_id not in self.ledger.foreign:
                self.ledger.created_by_volimg.add(image_id)
        # 2. nothing deleted that docs/safety.md does not allow
        for image_id in set(before) - set(after):
            if image_id in self.ledger.operator_deleted:
                continue
            gone = before[image_id]
            assert "--keep" in " ".join(what), f"{what} deleted image {image_id} without --keep"
            assert gone.volimgs_own, f"{what} deleted {image_id}, which is not volimg's own upload"
            assert image_id not in self.ledger.foreign, f"{what} deleted a foreign image {image_id}"
            assert not gone.protected, f"{what} deleted protected image {image_id}"
        for image_id in set(before) & set(after):
            lost = before[image_id].stores - after[image_id].stores
            if not lost:
                continue
            assert after[image_id].stores, f"{what} removed the last copy of {image_id}"
            assert image_id not in self.ledger.foreign, (
                f"{what} removed {lost} of foreign {image_id}"
            )
            stamp = before[image_id].stamp
            assert stamp is not None, f"{what} removed {lost} of unstamped {image_id}"
            assert stamp.prune, f"{what} removed {lost} of {image_id} whose intent does not prune"
            assert not lost & set(stamp.also_stores), f"{what} removed kept stores {lost}"
            if stamp.base_image is not None:
                assert stamp.base_image not in self.ledger.operator_deleted, (
                    f"{what} removed {lost} of {image_id} although its base image is gone"
                )

    @invariant()
    def once_per_period_means_once(self) -> None:
        # 3. at most one image per volume and period
        per: dict[tuple[str, str], list[str]] = {}
        for image in _images(self.conn).values():
            stamp = image.stamp
            mark = unfinished_mark(image.id, image.name, image.properties)
            intended = (
                stamp
                if stamp is not None and stamp.is_own_upload
                else (mark.intended if mark else None)
            )
            if intended is None or intended.period is None or intended.source_volume is None:
                continue
            per.setdefault((intended.source_volume, intended.period), []).append(image.id)
        doubles = {k: v for k, v in per.items() if len(v) > 1}
        assert not doubles, f"more than one image per volume and period: {doubles}"

    def _final_checks(self) -> None:
        """1. every image volimg created is, once finished by volimg, stamped and audited."""
        self._settle()
        code, doc, err = self.volimg("audit", "--fix", "-f", "json")
        assert code in (0, 3), err
        code, doc, err = self.volimg("audit", "-f", "json")
        assert doc is not None, err
        audited = {f["image"]["id"] for f in doc["findings"]}
        images = _images(self.conn)
        RULES_RUN["final images checked"] += len(self.ledger.created_by_volimg & set(images))
        for image_id in self.ledger.created_by_volimg - self.ledger.foreign:
            if image_id not in images:
                continue  # deleted by --keep (checked when it happened)
            image = images[image_id]
            stamp = image.stamp
            unfinished = f"image {image_id} ({image.name}) that volimg created is not finished"
            assert stamp is not None, f"{unfinished}: {image.properties}"
            assert stamp.stamped_by is StampedBy.UPLOAD, f"{unfinished}: {image.properties}"
            assert image_id in audited, f"volimg audit does not list image {image_id}"


def _is_moment(record: Any, moment: str) -> bool:
    """Has the request a kill is meant to interrupt reached the cloud?"""
    if record.origin != "client":
        return False
    body = record.json if isinstance(record.json, dict) else {}
    if moment == "upload":
        return record.method == "POST" and "os-volume_upload_image" in body
    if moment == "copy":
        return record.method == "POST" and record.service_path.endswith("/import")
    return record.method == "PATCH" and record.service == "image"


@pytest.mark.timeout(900)
def test_volimg_keeps_its_promises_over_any_order_of_commands_kills_and_faults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOLIMG_UPLOAD_TIMEOUT", "60")
    RULES_RUN.clear()
    run_state_machine_as_test(
        VolimgUnderCron,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=os.environ.get("VOLIMG_INVARIANT_RANDOM") != "1",
            database=None,  # the same examples on every run, not last failures replayed
            suppress_health_check=list(HealthCheck),
            # Shrinking replays real processes and kills: minutes. Off for a quick look.
            phases=[p for p in Phase if p is not Phase.shrink or SHRINK],
        ),
    )
    print(f"rules run: {dict(sorted(RULES_RUN.items()))}")
    rules = {
        name
        for name, value in vars(VolimgUnderCron).items()
        if hasattr(value, "hypothesis_stateful_rule")
    }
    ran = rules & set(RULES_RUN)
    # The machine must not idle: the default run (100 steps, derandomized) uses most
    # rules and kills real processes; a long run uses every one.
    assert RULES_RUN["killed_nightly_batch"], "no process was killed"
    assert len(ran) >= 0.75 * len(rules), f"rules never run: {sorted(rules - ran)}"
    if EXAMPLES * STEPS >= 200:
        assert ran == rules, f"rules never run: {sorted(rules - ran)}"


@pytest.fixture(autouse=True)
def _keep_env() -> Iterator[None]:
    saved = os.environ.get("OS_CLIENT_CONFIG_FILE")
    yield
    if saved is None:
        os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
    else:
        os.environ["OS_CLIENT_CONFIG_FILE"] = saved
