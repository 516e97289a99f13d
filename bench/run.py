#!/usr/bin/env python3
"""volimg beside the OpenStack CLI: start-up, requests per job, completion latency.

    python3 bench/run.py            # everything, sandbox and real tier (~10 min)
    python3 bench/run.py --quick    # fewer runs, shorter waits, sandbox only (~3 min)

On first use it makes its own venv (bench/.venv) with volimg (editable) and
python-openstackclient pinned by tests/realcloud/constraints.txt, then runs itself
again inside it. It starts a sandbox cloud in this process, and for the real tier runs
``tests/realcloud/stack.py up`` (idempotent). It prints the tables and writes them to
docs/performance.md. Nothing here asserts a time: these are measurements.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV = BENCH / ".venv"
CONSTRAINTS = REPO / "tests" / "realcloud" / "constraints.txt"
STACK = REPO / "tests" / "realcloud" / "stack.py"
PROBE = BENCH / "probe"
FLOOR = BENCH / "floor_stores.py"
OUTPUT = REPO / "docs" / "performance.md"
OSC_PIN = "python-openstackclient==10.5.0"

# The real tier's bench volume: our own, so that nobody else's upload of boot-vol can
# collide with ours on the shared stack. Made once from cirros-base and kept.
REAL_VOLUME = "volimg-bench-vol"
OSC_POLL_SECONDS = 2.0  # what an operator's `watch`-style loop does


# --------------------------------------------------------------------------- venv


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _install_stamp() -> str:
    digest = hashlib.sha256()
    for path in (CONSTRAINTS, REPO / "pyproject.toml"):
        digest.update(path.read_bytes())
    digest.update(OSC_PIN.encode())
    return digest.hexdigest()


def ensure_venv() -> None:
    """Create bench/.venv with volimg and the OpenStack CLI, then run inside it."""
    stamp_file = VENV / "bench-installed"
    stamp = _install_stamp()
    if not (stamp_file.exists() and stamp_file.read_text() == stamp):
        print(f"bench: installing volimg and {OSC_PIN} into {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(_venv_python()), "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS),
             "-e", str(REPO), OSC_PIN],
            check=True,
        )  # fmt: skip
        stamp_file.write_text(stamp)
    if Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(str(_venv_python()), [str(_venv_python()), __file__, *sys.argv[1:]])


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Sample:
    wall: float
    peak_rss_mb: float


# Runs the timed commands. A child's peak RSS (ru_maxrss) includes the memory of the
# process it was forked from, up to its exec (Linux keeps the old mm's high-water
# mark), so the children are started from this small process (python -S, stdlib
# json and os only: under 10 MB) and never from the bench, which holds a sandbox.
RUNNER = r"""
import json, os, sys, time
jobs = json.loads(sys.stdin.read())
results = []
for argv, env in jobs:
    null = os.open(os.devnull, os.O_WRONLY)
    err = os.open(env.pop("BENCH_STDERR"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=[
        (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, err, 2)])
    _, status, usage = os.wait4(pid, 0)
    results.append([time.perf_counter() - started, usage.ru_maxrss,
                    os.waitstatus_to_exitcode(status)])
    os.close(null)
    os.close(err)
print(json.dumps(results))
"""


def run_measured(commands: list[list[str]], env: dict[str, str]) -> list[Sample]:
    """Run each command once, in order: wall time from spawn to reaping, and peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        stderr = str(Path(tmp) / "stderr")
        jobs = [[argv, dict(env, BENCH_STDERR=stderr)] for argv in commands]
        proc = subprocess.run(
            [sys.executable, "-S", "-c", RUNNER],
            input=json.dumps(jobs),
            capture_output=True,
            text=True,
            check=True,
        )
        samples = []
        for argv, (wall, rss_kib, code) in zip(commands, json.loads(proc.stdout), strict=True):
            if code != 0:
                detail = Path(stderr).read_text()
                raise RuntimeError(f"{' '.join(argv)} exited {code}:\n{detail}")
            samples.append(Sample(wall=wall, peak_rss_mb=rss_kib / 1024))  # Linux: KiB
    return samples


@dataclass
class Row:
    label: str
    argv: list[str]
    samples: list[Sample] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def rss(self) -> float:
        return statistics.median(s.peak_rss_mb for s in self.samples)

    def times(self, other: Row) -> float:
        """How many times ``other``'s wall time this row's is: the median of the ratios
        within each round (the two ran back to back, so a slow moment of a shared
        machine weighs on both), steadier than the ratio of the two medians."""
        pairs = zip(self.samples, other.samples, strict=True)
        return statistics.median(mine.wall / theirs.wall for mine, theirs in pairs)


def measure(rows: list[Row], runs: int, env: dict[str, str]) -> None:
    """One discarded warm-up round, then ``runs`` rounds, every command once per round.

    Rounds alternate the order, so that a slow moment of a shared machine falls on
    every command alike.
    """
    order = [row for i in range(runs) for row in (rows if i % 2 == 0 else rows[::-1])]
    run_measured([row.argv for row in rows], env)
    for row, sample in zip(order, run_measured([row.argv for row in order], env), strict=True):
        row.samples.append(sample)


def bin_path(name: str) -> str:
    return str(Path(sys.prefix) / "bin" / name)


def cloud_env(clouds_yaml: Path, cloud: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_CLIENT_CONFIG_FILE=str(clouds_yaml), OS_CLOUD=cloud)
    env.pop("PYTHONPATH", None)
    env.pop("VOLIMG_BENCH_REQUEST_LOG", None)
    # With it set (some shells and CI set it), nothing writes bytecode, and volimg,
    # installed editable, would be compiled from source on every start: 40 ms that no
    # installed volimg pays (pip compiles a wheel's modules when it installs them).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_sources() -> None:
    """Compile volimg's modules as pip does when it installs a wheel, before any timing.

    The packages from PyPI in the venv were compiled when pip installed them; volimg is
    installed editable, so without this its first runs (and every run, where
    PYTHONDONTWRITEBYTECODE is set) would time Python's compiler, not volimg.
    """
    import compileall

    compileall.compile_dir(str(REPO / "volimg"), quiet=1)


# --------------------------------------------------------------------------- tables


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def startup_tables(volume: str, env: dict[str, str], runs: int, with_help: bool) -> str:
    """Start-up: help and version beside python -c pass; cloud commands beside floors."""
    py = sys.executable
    out = [
        "Each x column and ratio is the median, over the rounds, of the ratio within one "
        "round (whose commands run back to back); wall times and peak RSS are medians.\n"
    ]
    if with_help:
        floor = Row("`python -c pass` (this venv)", [py, "-c", "pass"])
        click_row = Row('`python -c "import click"`', [py, "-c", "import click"])
        help_rows = [
            floor,
            click_row,
            Row("`volimg --version`", [bin_path("volimg"), "--version"]),
            Row("`volimg --help`", [bin_path("volimg"), "--help"]),
            Row("`volimg upload --help`", [bin_path("volimg"), "upload", "--help"]),
            Row("`openstack --help`", [bin_path("openstack"), "--help"]),
        ]
        measure(help_rows, runs, env)
        osc_help = help_rows[-1]
        out.append(
            md_table(
                ["command", "median wall", "x `python -c pass`", "peak RSS"],
                [
                    [r.label, f"{r.wall:.3f} s", f"{r.times(floor):.2f}x", f"{r.rss:.1f} MB"]
                    for r in help_rows
                ],
            )
        )
        vhelp = help_rows[3]
        out.append(
            "\nTargets: `volimg --help` within 2.5x of `python -c pass`: "
            f"{vhelp.times(floor):.2f}x, {verdict(vhelp.times(floor) <= 2.5)} "
            f"(`import click` alone: {click_row.times(floor):.2f}x; volimg's own part "
            f"{(vhelp.wall - click_row.wall) * 1000:.0f} ms); "
            f"at least 20x faster than `openstack --help`: {osc_help.times(vhelp):.0f}x, "
            f"{verdict(osc_help.times(vhelp) >= 20)}; peak RSS at most 0.6x: "
            f"{vhelp.rss / osc_help.rss:.2f}x, {verdict(vhelp.rss <= 0.6 * osc_help.rss)}.\n"
        )
    sdk_floor = Row("bare openstacksdk: connect + list stores", [py, str(FLOOR)])
    sdk_same = Row(
        "bare openstacksdk, volimg's two requests (+ `GET /v2/info/import`)",
        [py, str(FLOOR), "--import-methods"],
    )
    v_stores = Row("`volimg stores`", [bin_path("volimg"), "stores"])
    o_stores = Row("`openstack image stores list`", [bin_path("openstack"), "image", "stores", "list"])  # fmt: skip
    o_list = Row("`openstack image list`", [bin_path("openstack"), "image", "list"])
    v_plan = Row(f"`volimg plan {volume}`", [bin_path("volimg"), "plan", volume])
    o_show = Row(f"`openstack volume show {volume}`", [bin_path("openstack"), "volume", "show", volume])  # fmt: skip
    rows = [sdk_floor, sdk_same, v_stores, o_stores, o_list, v_plan, o_show]
    measure(rows, runs, env)
    out.append(
        md_table(
            ["command", "median wall", "x sdk floor", "peak RSS", "x sdk floor RSS"],
            [
                [
                    r.label,
                    f"{r.wall:.3f} s",
                    f"{r.times(sdk_floor):.2f}x",
                    f"{r.rss:.1f} MB",
                    f"{r.rss / sdk_floor.rss:.2f}x",
                ]
                for r in rows
            ],
        )
    )
    out.append(
        "\nTargets: `volimg stores` within 1.05x of the sdk floor: "
        f"{v_stores.times(sdk_floor):.3f}x, "
        f"{verdict(v_stores.times(sdk_floor) <= 1.05)} (the floor sending volimg's "
        f"requests too: {sdk_same.times(sdk_floor):.3f}x; volimg beside it: "
        f"{v_stores.times(sdk_same):.3f}x); "
        f"at least 2.5x faster than `openstack image list`: {o_list.times(v_stores):.2f}x, "
        f"{verdict(o_list.times(v_stores) >= 2.5)} (and {o_stores.times(v_stores):.2f}x "
        "faster than `openstack image stores list`, the same job); peak RSS at most 0.6x the "
        f"OpenStack CLI's for the same job: stores {v_stores.rss / o_stores.rss:.3f}x "
        f"({verdict(v_stores.rss <= 0.6 * o_stores.rss)}), plan vs volume show "
        f"{v_plan.rss / o_show.rss:.3f}x ({verdict(v_plan.rss <= 0.6 * o_show.rss)}).\n"
    )
    out.append("Where the start-up goes (`python -X importtime`, one run per round):\n")
    out.append(import_table(env, max(3, runs // 2)))
    return "\n".join(out)


def import_profile(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Seconds of import time by top-level package (-X importtime, self times summed)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], env=env, capture_output=True, text=True
    )
    by_package: Counter[str] = Counter()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, self_us, _, name = (part.strip() for part in re.split(r"[:|]", line, maxsplit=3))
            if self_us.isdigit():
                top = name.split(".")[0]
                by_package[top if top in IMPORT_GROUPS else "other (stdlib, ...)"] += int(self_us)
    return {k: v / 1e6 for k, v in by_package.items()}


IMPORT_GROUPS = (
    "openstack", "keystoneauth1", "requests", "urllib3", "stevedore", "yaml", "dogpile",
    "click", "rich", "tenacity", "volimg",
)  # fmt: skip


def import_table(env: dict[str, str], runs: int) -> str:
    """Where the start-up of `volimg stores` goes, beside the sdk floor script."""
    commands = {
        "`volimg stores`": [bin_path("volimg"), "stores"],
        "sdk floor": [str(FLOOR)],
    }
    profiles: dict[str, list[dict[str, float]]] = {k: [] for k in commands}
    for _ in range(runs):
        for label, argv in commands.items():
            profiles[label].append(import_profile(argv, env))
    groups = [*IMPORT_GROUPS, "other (stdlib, ...)"]
    rows = []
    totals = dict.fromkeys(commands, 0.0)
    for group in groups:
        cells = []
        for label in commands:
            value = statistics.median(p.get(group, 0.0) for p in profiles[label])
            totals[label] += value
            cells.append(f"{value * 1000:.0f} ms")
        rows.append([group, *cells])
    rows.append(["**all imports**", *(f"**{totals[k] * 1000:.0f} ms**" for k in commands)])
    return md_table(["package (import self-time, median)", *commands], rows)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Sent:
    """One request a tool sent, as the probe saw it."""

    method: str
    url: str
    status: int


_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-f]{32}"
)


def classify(url: str, ports: dict[int, str] | None) -> tuple[str, str]:
    """(service, path with IDs as {id}) from a URL, by port (real tier) or prefix (sandbox)."""
    from urllib.parse import urlsplit

    split = urlsplit(url)
    path = split.path or "/"
    if ports is not None:
        service = ports.get(split.port or 80, "other")
    else:
        head, _, rest = path.lstrip("/").partition("/")
        service = {"identity": "identity", "volume": "volume", "image": "image"}.get(head, "other")
        path = "/" + rest
    return service, _ID.sub("{id}", path) + (
        "?" + _ID.sub("{id}", split.query) if split.query else ""
    )


@contextmanager
def probed(env: dict[str, str]) -> Iterator[tuple[dict[str, str], Callable[[], list[Sent]]]]:
    """An environment whose processes log every HTTP request to a file (bench/probe)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "requests.jsonl"
        probed_env = dict(env, PYTHONPATH=str(PROBE), VOLIMG_BENCH_REQUEST_LOG=str(log))

        def read() -> list[Sent]:
            if not log.exists():
                return []
            return [Sent(**json.loads(line)) for line in log.read_text().splitlines()]

        yield probed_env, read


def osc_json(env: dict[str, str], *args: str) -> Any:
    proc = subprocess.run(
        [bin_path("openstack"), *args, "-f", "json"], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"openstack {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return json.loads(proc.stdout)


def osc_properties(image: dict[str, Any]) -> dict[str, Any]:
    """python-openstackclient shows Glance's ``stores`` and ``os_glance_*`` under properties."""
    return {**image, **(image.get("properties") or {})}


def osc_stores(image: dict[str, Any]) -> set[str]:
    return {s for s in str(osc_properties(image).get("stores") or "").split(",") if s}


def osc_job(env: dict[str, str], volume: str, name: str) -> tuple[str, int]:
    """Upload and copy with the OpenStack CLI, as its documentation has an operator do it.

    Find the base image's stores (volume show, image show), ``image create --volume``,
    poll ``image show`` every 2 s until active, then one ``image import --method
    copy-image`` for the missing stores and poll ``image show`` every 2 s until they are
    listed and the import lock is gone. Returns the image id and the number of polls.
    """
    vol = osc_json(env, "volume", "show", volume)
    base_id = (vol.get("volume_image_metadata") or {})["image_id"]
    wanted = osc_stores(osc_json(env, "image", "show", base_id))
    created = osc_json(env, "image", "create", "--volume", volume, "--disk-format", "qcow2", name)
    image_id = created["image_id"]
    polls = 0

    def show() -> dict[str, Any]:
        nonlocal polls
        time.sleep(OSC_POLL_SECONDS)
        polls += 1
        return dict(osc_json(env, "image", "show", image_id))

    image = show()
    while image["status"] != "active":
        image = show()
    missing = sorted(wanted - osc_stores(image))
    if missing:
        # One import for every store: `--store a b` (the option takes several values);
        # the documented `--store a --store b` would copy to b alone.
        subprocess.run(
            [bin_path("openstack"), "image", "import", image_id, "--method", "copy-image",
             "--store", *missing],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        image = show()
        while not set(missing) <= osc_stores(image) or osc_properties(image).get(
            "os_glance_import_task"
        ):
            image = show()
    return image_id, polls


def volimg_job(env: dict[str, str], volume: str, name: str) -> dict[str, Any]:
    proc = subprocess.run(
        [bin_path("volimg"), "upload", volume, "--disk-format", "qcow2", "--name", name,
         "-f", "json"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"volimg upload exited {proc.returncode}: {proc.stdout}{proc.stderr}")
    return dict(json.loads(proc.stdout))


@dataclass
class JobCount:
    volimg: list[Sent]
    osc: list[Sent]
    osc_polls: int
    volimg_seconds: float
    osc_seconds: float


def count_jobs(env: dict[str, str], volume: str) -> tuple[JobCount, list[str]]:
    """Run both jobs under the probe; return what each sent and the images made."""
    made: list[str] = []
    with probed(env) as (penv, read):
        started = time.monotonic()
        doc = volimg_job(penv, volume, f"bench-volimg-{uuid.uuid4().hex[:8]}")
        volimg_seconds = time.monotonic() - started
        made.append(doc["image"]["id"])
        volimg_sent = read()
    with probed(env) as (penv, read):
        started = time.monotonic()
        image_id, polls = osc_job(penv, volume, f"bench-osc-{uuid.uuid4().hex[:8]}")
        osc_seconds = time.monotonic() - started
        made.append(image_id)
        osc_sent = read()
    return JobCount(volimg_sent, osc_sent, polls, volimg_seconds, osc_seconds), made


def request_tables(job: JobCount, ports: dict[int, str] | None) -> str:
    def by(sent: list[Sent], key: Callable[[Sent], tuple[str, ...]]) -> Counter[tuple[str, ...]]:
        return Counter(key(s) for s in sent)

    def service_method(s: Sent) -> tuple[str, ...]:
        return (classify(s.url, ports)[0], s.method)

    def endpoint(s: Sent) -> tuple[str, ...]:
        service, path = classify(s.url, ports)
        return (service, s.method, path.split("?")[0])

    out = []
    for title, key in (("by service and method", service_method), ("by endpoint", endpoint)):
        v, o = by(job.volimg, key), by(job.osc, key)
        keys = sorted(set(v) | set(o))
        rows = [[*(f"`{p}`" if i == 2 else p for i, p in enumerate(k)), str(v[k]), str(o[k])] for k in keys]  # fmt: skip
        width = len(keys[0]) if keys else 2
        rows.append(["**total**", *([""] * (width - 1)), f"**{len(job.volimg)}**", f"**{len(job.osc)}**"])  # fmt: skip
        header = [*["service", "method", "path"][:width], "volimg", "openstack CLI"]
        out.append(f"Requests {title}:\n\n" + md_table(header, rows))
    repeats = Counter((s.method, classify(s.url, ports)[1]) for s in job.volimg)
    repeated = [[m, f"`{p}`", str(n)] for (m, p), n in sorted(repeats.items()) if n > 1]
    out.append(
        "Requests volimg sent more than once (same method, path and query):\n\n"
        + (md_table(["method", "path", "times"], repeated) if repeated else "none")
    )
    out.append(
        f"Job wall time: volimg {job.volimg_seconds:.1f} s, OpenStack CLI {job.osc_seconds:.1f} s "
        f"({job.osc_polls} `openstack image show` polls, one every {OSC_POLL_SECONDS:g} s). "
        f"Total requests: volimg {len(job.volimg)}, OpenStack CLI {len(job.osc)}: "
        f"{verdict(len(job.volimg) < len(job.osc))} (volimg must send fewer)."
    )
    return "\n\n".join(out)


# --------------------------------------------------------------------------- latency


class Watcher(threading.Thread):
    """Watches a sandbox's state every few ms: when the cloud finished, when requests came."""

    def __init__(self, sandbox: Any, volume_name: str) -> None:
        super().__init__(daemon=True)
        self.sb = sandbox
        self.volume_name = volume_name
        self.stop_event = threading.Event()
        self.request_at: dict[int, float] = {}
        self.upload_done: float | None = None
        self.lock_gone: float | None = None
        self._was_uploading = False
        self._locked: set[str] = set()
        self._known_images = set(sandbox.cloud.images)

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.tick()
            time.sleep(0.002)
        self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        with self.sb.cloud.lock:
            volume = self.sb.cloud.find_volume(self.volume_name)
            if volume.status == "uploading":
                self._was_uploading = True
            elif self._was_uploading and self.upload_done is None:
                self.upload_done = now
            for image_id, image in self.sb.cloud.images.items():
                if image_id in self._known_images:
                    continue
                if "os_glance_import_task" in image.extra:
                    self._locked.add(image_id)
                elif image_id in self._locked and self.lock_gone is None:
                    self.lock_gone = now
        if len(self.sb.requests) > len(self.request_at):
            for record in self.sb.requests:
                self.request_at.setdefault(record.seq, now)


@dataclass(frozen=True)
class Latency:
    duration: float
    phase: str
    late: float
    polls: int
    wait: float


def latency_for(duration: float) -> tuple[list[Latency], float]:
    """volimg upload boot-vol with upload and copy each taking ``duration`` seconds."""
    from volimg.sandbox import Sandbox, Timings

    timings = Timings(upload=duration, store_copy=duration / 2, import_lag=0.05)
    with Sandbox(seed="demo", timings=timings) as sb:
        env = cloud_env(sb.clouds_yaml, sb.admin_cloud)
        watcher = Watcher(sb, "boot-vol")
        watcher.start()
        volimg_job(env, "boot-vol", f"latency-{duration:g}")
        exited = time.monotonic()
        watcher.stop_event.set()
        watcher.join()
        records = [r for r in sb.requests if r.origin == "client"]
    at = watcher.request_at

    def first(pattern: str, method: str) -> int:
        return next(r.seq for r in records if r.method == method and re.search(pattern, r.path))

    upload_post = first(r"/volumes/[^/]+/action$", "POST")
    import_post = first(r"/images/[^/]+/import$", "POST")
    upload_polls = [
        r.seq for r in records
        if r.method == "GET" and re.search(r"/volumes/[0-9a-f-]{36}$", r.path)
        and upload_post < r.seq < import_post
    ]  # fmt: skip
    copy_polls = [
        r.seq for r in records
        if r.method == "GET" and r.path.endswith("/tasks") and r.seq > import_post
    ]  # fmt: skip
    assert watcher.upload_done is not None
    assert watcher.lock_gone is not None
    results = [
        Latency(
            duration,
            "upload (Cinder)",
            at[upload_polls[-1]] - watcher.upload_done,
            len(upload_polls),
            at[upload_polls[-1]] - at[upload_post],
        ),
        Latency(
            duration,
            "copy to 2 stores (Glance)",
            at[copy_polls[-1]] - watcher.lock_gone,
            len(copy_polls),
            at[copy_polls[-1]] - at[import_post],
        ),
    ]
    return results, exited - watcher.lock_gone


def worst_lateness(duration: float) -> float:
    """The schedule's own bound at this duration: the gap between the polls around it."""
    from volimg.results import DEFAULT_POLL_INTERVAL
    from volimg.waiting import next_poll_gap

    at = next_poll_gap(0.0, DEFAULT_POLL_INTERVAL)
    while True:
        gap = next_poll_gap(at, DEFAULT_POLL_INTERVAL)
        if at + gap >= duration:
            return gap
        at += gap


def latency_table(durations: list[float]) -> str:
    rows = []
    for duration in durations:
        results, exit_late = latency_for(duration)
        for r in results:
            bound = max(0.5, 0.05 * r.duration)
            rate = r.polls / r.wait if r.wait > 0 else float("inf")
            rows.append(
                [
                    f"{r.duration:g} s",
                    r.phase,
                    f"{r.late:.2f} s",
                    f"{worst_lateness(r.duration):.2f} s",
                    f"{bound:.2f} s",
                    verdict(r.late <= bound),
                    str(r.polls),
                    f"{rate:.2f}",
                    verdict(rate <= 1.0),
                ]
            )
        rows.append([f"{duration:g} s", "process exit after the copy", f"{exit_late:.2f} s", "", "", "", "", "", ""])  # fmt: skip
        print(f"bench: latency {duration:g} s done", flush=True)
    return md_table(
        ["duration", "step", "late", "worst case", "target", "", "polls", "polls/s", ""],
        rows,
    )


# --------------------------------------------------------------------------- real tier


def real_state() -> Path:
    return Path(os.environ.get("VOLIMG_REALCLOUD_STATE", REPO / ".realcloud"))


def real_stack() -> tuple[Path, str, dict[int, str]]:
    state = real_state()
    subprocess.run([sys.executable, str(STACK), "up", "--state", str(state)], check=True)
    info = json.loads((state / "stack.json").read_text())
    from urllib.parse import urlsplit

    endpoints = info["endpoints"]
    ports = {
        urlsplit(endpoints[key]).port or 80: service
        for key, service in (("keystone", "identity"), ("glance", "image"), ("cinder", "volume"))
    }
    return Path(info["clouds_yaml"]), info["admin_cloud"], ports


def ensure_real_volume(env: dict[str, str]) -> None:
    """Our own volume on the shared stack, from cirros-base, made once and kept."""
    found = subprocess.run(
        [bin_path("openstack"), "volume", "show", REAL_VOLUME, "-f", "json"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if found.returncode == 0 and json.loads(found.stdout)["status"] == "available":
        return
    if found.returncode != 0:
        osc_json(
            env, "volume", "create", "--image", "cirros-base", "--size", "1",
            "--type", "standard", REAL_VOLUME,
        )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = osc_json(env, "volume", "show", REAL_VOLUME)["status"]
        if status == "available":
            return
        if status == "error":
            raise RuntimeError(f"{REAL_VOLUME} went to error on the real tier")
        time.sleep(2)
    raise RuntimeError(f"{REAL_VOLUME} did not become available in 300 s")


def delete_images(env: dict[str, str], image_ids: list[str]) -> None:
    if image_ids:
        subprocess.run(
            [bin_path("openstack"), "image", "delete", *image_ids], env=env, capture_output=True
        )


# --------------------------------------------------------------------------- main


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = match.group(1).strip() if match else cpu
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average {load}"
    )


def requests_per_job(sections: list[tuple[str, str]]) -> None:
    """Requests per job on a sandbox of its own, with simulated upload and copy times."""
    from volimg.sandbox import Sandbox, Timings

    print("bench: requests per job, sandbox ...", flush=True)
    with Sandbox(seed="demo", timings=Timings.instant()) as sb:
        env = cloud_env(sb.clouds_yaml, sb.admin_cloud)
        sb.timings = Timings(upload=2.0, store_copy=1.0, import_lag=0.05)
        sb.requests.clear()
        job, _ = count_jobs(env, "boot-vol")
        logged = len([r for r in sb.requests if r.origin == "client"])
        probe_total = len(job.volimg) + len(job.osc)
        table = request_tables(job, None)
        table += (
            f"\n\nCross-check of the counting method: the probe saw {probe_total} requests, "
            f"the sandbox's request log {logged} (origin client)."
        )
        sections.append(("Requests per job on the sandbox cloud (upload 2 s, each store copy 1 s)", table))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="3 runs, waits of 1 and 5 s, no real tier"
    )
    parser.add_argument(
        "--runs", type=int, help="timed runs per command [default 11; 3 with --quick]"
    )
    parser.add_argument("--no-real", action="store_true", help="skip the real tier")
    parser.add_argument("--no-latency", action="store_true", help="skip completion latency")
    parser.add_argument(
        "--startup-only",
        action="store_true",
        help="only start-up against the sandbox; the file's other sections are kept",
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help="Markdown file to write")
    args = parser.parse_args(argv)
    ensure_venv()
    runs = args.runs or (3 if args.quick else 11)
    durations = [1.0, 5.0] if args.quick else [1.0, 5.0, 20.0, 60.0]
    real = not (args.quick or args.no_real or args.startup_only)

    from volimg import __version__
    from volimg.sandbox import Sandbox, Timings

    started = datetime.now(timezone.utc)
    sections: list[tuple[str, str]] = []
    load_before = machine()

    compile_sources()
    with Sandbox(seed="demo", timings=Timings.instant()) as sb:
        env = cloud_env(sb.clouds_yaml, sb.admin_cloud)
        print("bench: start-up, sandbox ...", flush=True)
        sections.append(("Start-up against the sandbox cloud", startup_tables("boot-vol", env, runs, True)))  # fmt: skip
    if not args.startup_only:
        requests_per_job(sections)

    if not (args.no_latency or args.startup_only):
        print("bench: completion latency ...", flush=True)
        sections.append(("Completion latency (sandbox, simulated durations)", latency_table(durations)))  # fmt: skip

    if real:
        clouds_yaml, cloud, ports = real_stack()
        env = cloud_env(clouds_yaml, cloud)
        ensure_real_volume(env)
        print("bench: start-up, real tier ...", flush=True)
        sections.append(("Start-up against the real tier (Keystone 30, Glance 33, Cinder 29)", startup_tables(REAL_VOLUME, env, runs, False)))  # fmt: skip
        print("bench: requests per job, real tier ...", flush=True)
        job, made = count_jobs(env, REAL_VOLUME)
        try:
            sections.append(("Requests per job on the real tier", request_tables(job, ports)))
        finally:
            delete_images(env, made)

    header = (
        f"Measured {started:%Y-%m-%d %H:%M} UTC by `python3 bench/run.py"
        f"{' --quick' if args.quick else ''}{' --startup-only' if args.startup_only else ''}"
        f"{f' --runs {args.runs}' if args.runs else ''}` "
        f"(volimg {__version__}, python-openstackclient "
        f"10.5.0, {runs} timed runs per command).\n\nMachine at the start: {load_before}.\n"
        f"Machine at the end: {machine()}."
    )
    body = "\n\n".join(f"### {title}\n\n{text}" for title, text in sections)
    print(f"\n{header}\n\n{body}\n")
    write_results(args.output, header + "\n\n" + body, keep_others=args.startup_only)
    return 0


BEGIN = "<!-- bench:begin (written by bench/run.py; edit outside these markers) -->"
END = "<!-- bench:end -->"


def write_results(path: Path, results: str, *, keep_others: bool = False) -> None:
    """Replace what lies between the markers; the prose around them is kept.

    With ``keep_others`` (a run that measured some sections only), a section of the
    earlier results that this run did not measure stays, after this run's, under the
    earlier run's own header, so that each figure keeps the date and machine it came from.
    """
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    earlier, _, tail = rest.partition(END)
    if keep_others:
        results += kept_sections(earlier, results)
    path.write_text(f"{head}{BEGIN}\n{results}\n{END}{tail}")
    print(f"bench: wrote {path}")


KEPT = "Sections below are kept from an earlier run: "


def kept_sections(earlier: str, results: str) -> str:
    """The earlier results' sections (``### title``) that ``results`` lacks, each group
    under a line naming the run that measured it; "" when there are none."""
    measured = set(re.findall(r"^### (.+)$", results, re.M))
    by_run: dict[str, list[str]] = {}
    for block in re.split(rf"^(?={re.escape(KEPT)})", earlier.strip(), flags=re.M):
        preamble, *parts = re.split(r"^(?=### )", block, flags=re.M)
        first = preamble.strip().splitlines()[0] if preamble.strip() else "an earlier run"
        source = first.removeprefix(KEPT)
        for part in parts:
            if part.splitlines()[0][4:] not in measured:
                by_run.setdefault(source, []).append(part.rstrip())
    return "".join(
        f"\n\n{KEPT}{source}\n\n" + "\n\n".join(parts) for source, parts in by_run.items()
    )


if __name__ == "__main__":
    sys.exit(main())
