"""The node_exporter textfile writer (volimg.metrics), read back with prometheus_client."""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.metrics_rules import naming_problems
from volimg.errors import ExitCode, InputError, OperationFailed
from volimg.metrics import Sample, check_textfile_path, read_gauge, render, write_textfile

RESULTS = ("ok", "partial", "failed", "skipped", "already-done")


def batch_samples(
    counts: dict[str, int], *, success: float | None = 1_764_480_000.0
) -> list[Sample]:
    """The metrics docs/cron.md names, as a batch would write them."""
    samples = [
        Sample(
            "volimg_batch_last_run_timestamp_seconds",
            1_764_480_000.5,
            help="When the last batch run finished (Unix time).",
        ),
        Sample(
            "volimg_batch_duration_seconds",
            93.25,
            help="How long the last batch run took.",
        ),
        Sample(
            "volimg_batch_uploaded_bytes",
            10 * 1024**3,
            help="Bytes uploaded by the last batch run.",
        ),
    ]
    if success is not None:
        samples.append(
            Sample(
                "volimg_batch_last_success_timestamp_seconds",
                success,
                help="When a batch run last finished with every volume done (Unix time).",
            )
        )
    samples += [
        Sample(
            "volimg_batch_volumes",
            counts.get(result, 0),
            {"result": result},
            help="Volumes of the last batch run, by result.",
        )
        for result in RESULTS
    ]
    return samples


def parse(path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {sorted labels: value}, through prometheus_client's own parser."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            assert sample.timestamp is None
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_batch_metrics_parse_and_follow_the_naming_rules(tmp_path: Path) -> None:
    path = tmp_path / "volimg.prom"
    samples = batch_samples({"ok": 48, "failed": 2})
    write_textfile(path, samples)
    parsed = parse(path)
    assert parsed["volimg_batch_volumes"] == {
        (("result", "ok"),): 48.0,
        (("result", "partial"),): 0.0,
        (("result", "failed"),): 2.0,
        (("result", "skipped"),): 0.0,
        (("result", "already-done"),): 0.0,
    }
    assert parsed["volimg_batch_duration_seconds"] == {(): 93.25}
    assert parsed["volimg_batch_uploaded_bytes"] == {(): float(10 * 1024**3)}
    assert parsed["volimg_batch_last_run_timestamp_seconds"] == {(): 1_764_480_000.5}
    assert naming_problems(samples, outcomes={"volimg_batch_volumes": ("result", RESULTS)}) == []


def test_help_and_type_lines_once_per_family(tmp_path: Path) -> None:
    text = render(batch_samples({}))
    assert text.count("# TYPE volimg_batch_volumes gauge") == 1
    assert text.count("# HELP volimg_batch_volumes ") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["volimg_batch_volumes"].type == "gauge"
    assert (
        families["volimg_batch_volumes"].documentation
        == "Volumes of the last batch run, by result."
    )


def test_label_values_and_help_are_escaped() -> None:
    awkward = 'a "quoted" \\ back\nslash'
    text = render(
        [Sample("volimg_test_info", 1, {"kind": awkward}, help='help with \\ and\nnewline "q"')]
    )
    (family,) = text_string_to_metric_families(text)
    assert family.documentation == 'help with \\ and\nnewline "q"'
    assert family.samples[0].labels == {"kind": awkward}
    assert "\n" not in text.strip().split("\n")[-1].split(" ")[0]  # one line per sample


def test_counter_family(tmp_path: Path) -> None:
    text = render([Sample("volimg_runs_total", 3, help="Runs.", kind="counter")])
    assert "# TYPE volimg_runs_total counter" in text
    (family,) = text_string_to_metric_families(text)
    assert family.type == "counter"
    assert [s.value for s in family.samples] == [3.0]


@pytest.mark.parametrize(
    ("value", "spelled"),
    [(math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"), (0, "0.0"), (1e21, "1e+21")],
)
def test_special_values(value: float, spelled: str) -> None:
    text = render([Sample("volimg_x", value, help="x")])
    assert text.endswith(f"volimg_x {spelled}\n")
    (family,) = text_string_to_metric_families(text)
    parsed = family.samples[0].value
    assert (math.isnan(parsed) and math.isnan(value)) or parsed == value


def test_file_is_0644_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    path = tmp_path / "volimg.prom"
    write_textfile(path, batch_samples({}))
    write_textfile(path, batch_samples({"ok": 1}))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volimg.prom"]
    assert parse(path)["volimg_batch_volumes"][(("result", "ok"),)] == 1.0


def test_replace_is_atomic_rename_in_the_same_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target is only ever renamed onto, from a sibling whose name is not *.prom."""
    path = tmp_path / "volimg.prom"
    path.write_text("# previous\n")
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        assert path.read_text() == "# previous\n"  # untouched until the rename
        assert Path(src).read_text() == render(batch_samples({}))  # complete beforehand
        renames.append((src, str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_textfile(path, batch_samples({}))
    ((src, dst),) = renames
    assert Path(src).parent == tmp_path
    assert not src.endswith(".prom")
    assert dst == str(path)


def test_failed_write_leaves_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "volimg.prom"
    path.write_text("# previous\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OperationFailed) as caught:
        write_textfile(path, batch_samples({}))
    assert str(caught.value) == f"cannot write the metrics file {path}: No space left on device"
    assert caught.value.exit_code == ExitCode.FAILED
    assert path.read_text() == "# previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volimg.prom"]


def test_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    path = tmp_path / "volimg.prom"
    path.symlink_to(victim)
    write_textfile(path, batch_samples({}))
    assert victim.read_text() == "precious\n"
    assert not path.is_symlink()
    assert "volimg_batch_volumes" in parse(path)


def test_planted_symlinks_at_temporary_names_are_never_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mkstemp opens with O_EXCL: even a link at the very name it picks is not followed."""
    import tempfile

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    names = iter(["planted", "planted", "fresh"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    (tmp_path / ".volimg.prom.planted.tmp").symlink_to(victim)
    write_textfile(tmp_path / "volimg.prom", batch_samples({}))
    assert victim.read_text() == "precious\n"
    assert (tmp_path / ".volimg.prom.planted.tmp").is_symlink()


@pytest.mark.parametrize("name", ["volimg.txt", "volimg.prom.tmp", "volimg", ".prom"])
def test_name_must_end_in_prom(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match=r"the name must end in \.prom"):
        write_textfile(tmp_path / name, [])
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "volimg.prom"
    with pytest.raises(InputError, match=f"the directory {tmp_path / 'nope'} does not exist"):
        check_textfile_path(path)


def test_unwritable_directory_is_refused_up_front(tmp_path: Path) -> None:
    """Root may write anywhere, so as root the check runs as nobody (setpriv)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    if os.geteuid() != 0:
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o555)
        with pytest.raises(InputError, match="cannot write in"):
            check_textfile_path(locked / "volimg.prom")
        return
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "util-linux's setpriv is needed to drop root here"
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        base.chmod(0o755)
        locked = base / "ro"
        locked.mkdir(mode=0o555)
        code = (
            "from pathlib import Path\n"
            "from volimg.errors import InputError\n"
            "from volimg.metrics import check_textfile_path\n"
            "try:\n"
            f"    check_textfile_path(Path({str(locked / 'volimg.prom')!r}))\n"
            "except InputError as exc:\n"
            "    print(exc.message)\n"
        )
        root = Path(__file__).resolve().parents[2]
        proc = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
             sys.executable, "-c", code],
            capture_output=True, text=True, check=False, cwd=base,
            env={**os.environ, "PYTHONPATH": str(root)},
        )  # fmt: skip
        assert "cannot write in" in proc.stdout, proc.stdout + proc.stderr
    finally:
        shutil.rmtree(base)


def test_read_gauge_reads_back_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "volimg.prom"
    write_textfile(path, batch_samples({"ok": 5}, success=1_700_000_000.0))
    assert read_gauge(path, "volimg_batch_last_success_timestamp_seconds") == 1_700_000_000.0
    assert read_gauge(path, "volimg_batch_volumes", {"result": "ok"}) == 5.0
    assert read_gauge(path, "volimg_batch_volumes", {"result": "failed"}) == 0.0
    assert read_gauge(path, "volimg_batch_volumes") is None  # labels must match exactly
    assert read_gauge(path, "volimg_batch_volumes", {"result": "nope"}) is None
    assert read_gauge(path, "volimg_no_such_metric") is None


def test_read_gauge_with_escaped_labels(tmp_path: Path) -> None:
    path = tmp_path / "x.prom"
    awkward = 'say "hi", \\ ok'
    write_textfile(path, [Sample("volimg_x", 7, {"a": awkward, "b": "2"}, help="x")])
    assert read_gauge(path, "volimg_x", {"b": "2", "a": awkward}) == 7.0


@pytest.mark.parametrize(
    "content",
    [None, b"", b"garbage\n", b"volimg_x not-a-number\n", b"\xff\xfe\n", b'volimg_x{a="1} 3\n'],
    ids=["missing", "empty", "garbage", "bad-value", "not-utf8", "bad-labels"],
)
def test_read_gauge_returns_none_when_unusable(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "x.prom"
    if content is not None:
        path.write_bytes(content)
    assert read_gauge(path, "volimg_x") is None


def test_read_gauge_accepts_hand_written_files(tmp_path: Path) -> None:
    path = tmp_path / "x.prom"
    path.write_text('# HELP volimg_x x\nvolimg_x{ a = "1" , } 2.5e3\nvolimg_y 4 1700000000000\n')
    assert read_gauge(path, "volimg_x", {"a": "1"}) == 2500.0
    assert read_gauge(path, "volimg_y") == 4.0


def test_read_gauge_does_not_follow_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real.prom"
    write_textfile(real, [Sample("volimg_x", 1, help="x")])
    link = tmp_path / "link.prom"
    link.symlink_to(real)
    assert read_gauge(link, "volimg_x") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "volimg-x"}, "not a Prometheus metric name"),
        ({"labels": {"__x": "1"}}, "not a Prometheus label name"),
        ({"labels": {"a-b": "1"}}, "not a Prometheus label name"),
        ({"kind": "histogram"}, "metric kind"),
    ],
)
def test_sample_refuses_invalid_names(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "volimg_x", "value": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        Sample(**fields)  # type: ignore[arg-type]


def test_render_refuses_duplicate_series_and_disagreeing_families() -> None:
    with pytest.raises(ValueError, match="two samples with labels"):
        render([Sample("volimg_x", 1, {"a": "1"}), Sample("volimg_x", 2, {"a": "1"})])
    with pytest.raises(ValueError, match="disagree"):
        render([Sample("volimg_x", 1, help="one"), Sample("volimg_x", 2, {"a": "1"}, help="two")])


@pytest.mark.parametrize(
    ("sample", "problem"),
    [
        (Sample("batch_duration_seconds", 1, help="h"), "lacks the application prefix"),
        (Sample("volimg_runs", 1, help="h", kind="counter"), "a counter's name ends in _total"),
        (Sample("volimg_runs_total", 1, help="h"), "only counters end in _total"),
        (Sample("volimg_duration_milliseconds", 1, help="h"), "use base units"),
        (Sample("volimg_uploaded_megabytes", 1, help="h"), "use base units"),
        (Sample("volimg_last_success_timestamp", 1, help="h"), "_timestamp_seconds"),
        (Sample("volimg_x", 1), "has no HELP text"),
        (Sample("volimg_x", 1, {"volume_id": "v"}, help="h"), "one value per resource"),
        (
            Sample("volimg_x", 1, {"result": "5f0b3c1e-8a39-4a5e-9a51-1c1b0a7d2e11"}, help="h"),
            "carries an id",
        ),
    ],
)
def test_naming_checker_catches(sample: Sample, problem: str) -> None:
    problems = naming_problems([sample])
    assert any(problem in p for p in problems), problems


def test_naming_checker_wants_zero_for_every_outcome() -> None:
    samples = [Sample("volimg_batch_volumes", 3, {"result": "ok"}, help="h")]
    problems = naming_problems(samples, outcomes={"volimg_batch_volumes": ("result", RESULTS)})
    assert problems == [
        f"volimg_batch_volumes: no sample for result={r!r} (export 0)" for r in RESULTS[1:]
    ]
