"""docs/cron.md: every checkable claim, checked.

The command and its options (each one an option of `volimg upload`, matched exactly),
the crontab and the systemd units, the default lock path, the exit codes and what a
batch can really exit with, the metric names and rules, the example file and the alert
rules. `tests/scenarios/test_batch.py` runs the exits the table explains against the
sandbox (a refused login is 5; a volume that gave up waiting makes the batch 1 or 3).
"""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import click
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.metrics_rules import naming_problems
from volimg.batch import BATCH_RESULTS as RESULTS
from volimg.cli import cli
from volimg.errors import ExitCode
from volimg.metrics import Sample

DOC = (Path(__file__).resolve().parents[2] / "docs" / "cron.md").read_text()
COMMAND = (
    "volimg upload --from-file /etc/volimg/nightly.txt --once-per day --keep 7 --lock "
    "--metrics-file /var/lib/node_exporter/textfile/volimg.prom -f ndjson"
)


ENV_SECTION = "## The same job with defaults from the environment"


def _blocks(language: str, document: str | None = None) -> list[str]:
    """The page's code blocks in ``language``, outside the environment-defaults section
    (which shows the same job again; its own tests read it)."""
    if document is None:
        before, _, rest = DOC.partition(ENV_SECTION)
        document = before + "\n## " + rest.split("\n## ", 1)[1] if rest else before
    return re.findall(rf"```{language}\n(.*?)```", document, flags=re.DOTALL)


def _env_section() -> str:
    return DOC.split(ENV_SECTION, 1)[1].split("\n## ", 1)[0]


def _unit(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_the_command_is_the_same_everywhere() -> None:
    (shell,) = _blocks("sh")
    assert shell.strip() == COMMAND
    (crontab,) = _blocks("crontab")
    fields = crontab.split()
    assert all(re.fullmatch(r"[\d*/,-]+", f) for f in fields[:5])
    assert " ".join(fields[5:]).startswith(
        "/usr/local/bin/volimg --os-cloud production " + COMMAND.removeprefix("volimg ")
    )
    service, _timer = _blocks("ini")
    assert _unit(service)["Service"]["ExecStart"] == "/usr/local/bin/" + COMMAND


def options_of(command: click.Command) -> set[str]:
    """Every spelling of every option the command takes (``--lock``, ``-f``, ...)."""
    return {
        spelling
        for param in command.params
        if isinstance(param, click.Option)
        for spelling in (*param.opts, *param.secondary_opts)
    }


def test_every_option_shown_is_an_option_of_volimg_upload() -> None:
    """Matched exactly: ``--lock`` must be an option, not a prefix of one."""
    table = re.search(r"\| option \| what it does \|\n(.*?)\n\n", DOC, flags=re.DOTALL)
    assert table is not None
    rows = re.findall(r"^\| `(-[-a-z]*)", table.group(1), flags=re.M)
    assert len(rows) == 10
    in_command = {word for word in shlex.split(COMMAND) if word.startswith("-")}
    assert set(rows) | in_command <= options_of(cli.commands["upload"])


def test_global_option_in_the_crontab_exists() -> None:
    (crontab,) = _blocks("crontab")
    assert "--os-cloud" in shlex.split(crontab)
    assert "--os-cloud" in options_of(cli)


def test_service_and_timer_units() -> None:
    service_text, timer_text = _blocks("ini")
    service = _unit(service_text)
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["SuccessExitStatus"] == str(ExitCode.LOCKED.value)
    assert service["Service"]["StateDirectoryMode"] == "0700"
    # XDG_STATE_HOME=/var/lib and StateDirectory=volimg: the default lock's directory.
    assert "XDG_STATE_HOME=/var/lib" in service_text
    assert service["Service"]["StateDirectory"] == "volimg"
    timer = _unit(timer_text)
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["OnCalendar"].endswith("UTC")
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_default_lock_path_under_the_service_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from volimg.locking import default_lock_path

    monkeypatch.setenv("XDG_STATE_HOME", "/var/lib")
    assert str(default_lock_path()) == "/var/lib/volimg/upload.lock"
    assert "/var/lib/volimg/upload.lock" in DOC
    assert "`$XDG_STATE_HOME/volimg/upload.lock`" in DOC
    assert "`~/.local/state/volimg/upload.lock`" in DOC


def exit_code_rows() -> dict[int, tuple[str, str]]:
    """The "Exit codes and alerts" table: code -> (meaning, alert?)."""
    table = re.search(r"## Exit codes and alerts\n(.*?)\n## ", DOC, flags=re.DOTALL)
    assert table is not None
    rows = re.findall(r"^\| (\d+) \| (.*) \| (.*) \|$", table.group(1), flags=re.M)
    return {int(code): (meaning, alert) for code, meaning, alert in rows}


def test_exit_code_table_lists_every_exit_code() -> None:
    assert set(exit_code_rows()) == {code.value for code in ExitCode}


def test_a_batchs_outcome_never_exits_4_or_5_and_the_table_says_so() -> None:
    """Per-volume errors (a timeout, a 403) become the volume's result; the batch's own
    exit code comes from the results (or the interrupt) alone. Exit 5 is only the CLI's,
    when the login or the volume lookup is refused before any volume starts."""
    import signal
    from datetime import datetime, timezone
    from itertools import combinations

    from volimg.batch import BatchOutcome, VolumeResult
    from volimg.errors import Interrupted

    def outcome(results: tuple[str, ...], interrupted: Interrupted | None = None) -> int:
        return BatchOutcome(
            period=None,
            results=tuple(VolumeResult(ref=r, volume=None, result=r) for r in results),
            started_at=datetime.now(timezone.utc),
            seconds=1.0,
            interrupted=interrupted,
        ).exit_code

    every = {outcome(mix) for n in range(len(RESULTS) + 1) for mix in combinations(RESULTS, n)}
    assert every == {ExitCode.OK, ExitCode.FAILED, ExitCode.PARTIAL}
    interrupts = {
        outcome(RESULTS, Interrupted("stopped", signum=signum))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    assert interrupts == {ExitCode.INTERRUPTED, ExitCode.TERMINATED}

    rows = exit_code_rows()
    timeout, auth = rows[ExitCode.TIMEOUT], rows[ExitCode.AUTH]
    assert timeout[0].startswith("never from a batch")
    assert "the run exits 1 or 3" in timeout[0]
    assert "before any volume was started" in auth[0]
    assert "the metrics file was not rewritten" in auth[0]


def written_metric_names() -> set[str]:
    """The metric names volimg's batch really writes (volimg.fleet_render)."""
    import tempfile
    from datetime import datetime, timezone
    from pathlib import Path

    from volimg.batch import BatchOutcome
    from volimg.fleet_render import write_batch_metrics

    outcome = BatchOutcome(
        period=None, results=(), started_at=datetime.now(timezone.utc), seconds=1.0
    )
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "volimg.prom"
        write_batch_metrics(path, outcome)
        return {f.name for f in text_string_to_metric_families(path.read_text())}


def test_metric_table_names_what_the_batch_writes() -> None:
    table = re.search(r"## Metrics\n(.*?)An example file", DOC, flags=re.DOTALL)
    assert table is not None
    documented = set(re.findall(r"`(volimg_[a-z_]+)", table.group(1)))
    assert documented == written_metric_names()
    results = re.search(r'result="([a-z|\\-]+)"', table.group(1))
    assert results is not None
    assert tuple(results.group(1).replace("\\", "").split("|")) == RESULTS


def test_example_file_parses_and_follows_the_naming_rules() -> None:
    (example,) = _blocks("text")
    families = list(text_string_to_metric_families(example))
    samples = [
        Sample(s.name, s.value, s.labels, help=f.documentation, kind=f.type)
        for f in families
        for s in f.samples
    ]
    assert all(s.timestamp is None for f in families for s in f.samples)
    assert {s.name for s in samples} == written_metric_names()
    assert naming_problems(samples, outcomes={"volimg_batch_volumes": ("result", RESULTS)}) == []


def test_alert_rules_use_only_documented_metrics() -> None:
    (rules_text,) = _blocks("yaml")
    rules = yaml.safe_load(rules_text)["groups"][0]["rules"]
    known = written_metric_names()
    assert rules
    for rule in rules:
        assert re.fullmatch(r"[A-Z][A-Za-z]+", rule["alert"])
        used = set(re.findall(r"volimg_[a-z_]+", rule["expr"]))
        assert used, rule["expr"]
        assert used <= known, rule["expr"]
        assert rule["labels"]["severity"] in ("critical", "warning")
    assert "volimg_batch_last_success_timestamp_seconds" in rules[0]["expr"]


def test_command_has_no_shell_surprises() -> None:
    assert shlex.split(COMMAND)[0] == "volimg"


def test_the_environment_defaults_shown_are_volimgs_own() -> None:
    """Every VOLIMG_* the page sets is a variable of `volimg upload` (the guide's table)."""
    shown = set(re.findall(r"\b(VOLIMG_[A-Z_]+)=", _env_section()))
    assert len(shown) >= 5
    known = {
        f"VOLIMG_UPLOAD_{param.name.upper()}"
        for param in cli.commands["upload"].params
        if isinstance(param, click.Option) and param.name
    }
    assert shown <= known, shown - known


def test_the_environment_unit_runs_the_same_job_as_the_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With the unit's environment, `upload --lock` means the page's long command."""
    (unit,) = _blocks("ini", _env_section())
    for name, value in re.findall(r"^Environment=(VOLIMG_[A-Z_]+)=(.*)$", unit, flags=re.M):
        if name == "VOLIMG_UPLOAD_FROM_FILE":
            assert value == "/etc/volimg/nightly.txt"
            value = str(tmp_path / "nightly.txt")  # the file must exist to be opened
            Path(value).write_text("boot-vol\n")
        monkeypatch.setenv(name, value)
    (command,) = re.findall(r"^ExecStart=/usr/local/bin/volimg (.*)$", unit, flags=re.M)
    ctx = cli.commands["upload"].make_context(
        "upload", shlex.split(command), auto_envvar_prefix="VOLIMG_UPLOAD"
    )
    assert ctx.params["once_per"] == "day"
    assert ctx.params["keep"] == 7
    assert ctx.params["concurrency"] == 4
    assert ctx.params["output_format"] == "ndjson"
    assert ctx.params["lock"] == ""
    assert ctx.params["from_file"].read() == "boot-vol\n"
    ctx.params["from_file"].close()
