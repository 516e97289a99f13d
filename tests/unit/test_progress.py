"""Progress as people read it: a bar per store on a terminal, plain lines elsewhere.

The terminal panel is checked with rich's recording console, fed events directly; the
plain log with its own clock (the events' ``elapsed``).
"""

from __future__ import annotations

import io
import re
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from rich.console import Console

from tests.conftest import CloudUnderTest
from volimg import events as ev
from volimg.cli import cli
from volimg.context import AppContext
from volimg.live import UploadPanel
from volimg.model import Image
from volimg.progress import PERCENT_EVERY, _LineLog

GIB = 1024**3
IMAGE = Image(
    id="9cab84c2", name="boot-vol-20261125T134434Z", status="active", stores=("fast",), size=GIB
)
_COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;)")  # SGR foreground colours


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def panel(view: UploadPanel, *, colour: bool = False) -> str:
    console = Console(record=True, force_terminal=True, width=110, no_color=not colour)
    console.print(view.render())
    return console.export_text(styles=colour)


def row(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line[2:].startswith(label))


@pytest.fixture
def view_and_clock() -> tuple[UploadPanel, Clock]:
    clock = Clock()
    return UploadPanel(clock=clock), clock


def feed(view: UploadPanel, clock: Clock, *events: ev.Event) -> None:
    for event in events:
        clock.now = event.elapsed
        view.update(event)


def upload_then_copy(view: UploadPanel, clock: Clock) -> None:
    feed(
        view,
        clock,
        ev.PhaseStarted(0, phase="upload", detail="asking Cinder"),
        ev.UploadStarted(1, image_id=IMAGE.id, image_name=IMAGE.name, store="fast"),
        ev.UploadProgress(2, image_status="saving", volume_status="uploading"),
    )


def test_the_upload_is_an_honest_spinner_until_glance_knows_the_size(
    view_and_clock: tuple[UploadPanel, Clock],
) -> None:
    view, clock = view_and_clock
    upload_then_copy(view, clock)

    text = panel(view)
    assert text.splitlines()[0].startswith("upload     00:02  image saving, volume uploading")
    upload = row(text, "upload → fast")
    assert upload[0] in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"  # spinning
    assert "uploading" in upload
    assert "%" not in upload
    assert "/s" not in upload

    feed(view, clock, ev.UploadFinished(10, image=IMAGE))
    upload = row(panel(view), "upload → fast")
    assert upload.startswith("✓ ")
    assert "1.0 GiB/1.0 GiB 100%" in upload


def test_a_copy_is_a_bar_of_glances_copied_mib_against_the_size_with_a_rate(
    view_and_clock: tuple[UploadPanel, Clock],
) -> None:
    view, clock = view_and_clock
    upload_then_copy(view, clock)
    feed(
        view,
        clock,
        ev.UploadFinished(10, image=IMAGE),
        ev.PhaseStarted(10, phase="replicate", detail="copy-image"),
        ev.CopyRequested(11, stores=("cheap", "archive"), request_id="req-1"),
        ev.CopyProgress(12, task_status="processing", message="", done=(), failed=()),
    )
    text = panel(view)
    cheap, archive = row(text, "cheap"), row(text, "archive")
    assert "copying" in cheap
    assert "%" not in cheap
    assert archive.startswith("· ")
    assert "waiting" in archive

    # Glance says "Copied N MiB" about once a minute: 256 MiB more in 60 s.
    feed(
        view,
        clock,
        ev.CopyProgress(72, task_status="processing", message="Copied 256 MiB", done=(), failed=()),
        ev.CopyProgress(
            132, task_status="processing", message="Copied 512 MiB", done=(), failed=()
        ),
    )
    cheap = row(panel(view), "cheap")
    assert "512.0 MiB/1.0 GiB  50%" in cheap
    assert "4.3 MiB/s" in cheap  # 256 MiB / 60 s
    assert "━" in cheap


def test_the_message_the_store_before_left_is_not_counted_for_the_next(
    view_and_clock: tuple[UploadPanel, Clock],
) -> None:
    view, clock = view_and_clock
    upload_then_copy(view, clock)
    feed(
        view,
        clock,
        ev.UploadFinished(10, image=IMAGE),
        ev.CopyRequested(11, stores=("cheap", "archive"), request_id="req-1"),
        ev.CopyProgress(
            70, task_status="processing", message="Copied 1024 MiB", done=("cheap",), failed=()
        ),
    )
    text = panel(view)
    assert "1.0 GiB/1.0 GiB 100%" in row(text, "cheap")
    archive = row(text, "archive")
    assert "copying" in archive
    assert "%" not in archive

    feed(
        view,
        clock,
        ev.CopyProgress(
            130, task_status="processing", message="Copied 100 MiB", done=("cheap",), failed=()
        ),
    )
    assert "100.0 MiB/1.0 GiB   9%" in row(panel(view), "archive")


def test_settled_stores_show_their_outcome_and_a_failure_its_cross(
    view_and_clock: tuple[UploadPanel, Clock],
) -> None:
    view, clock = view_and_clock
    upload_then_copy(view, clock)
    feed(
        view,
        clock,
        ev.UploadFinished(10, image=IMAGE),
        ev.CopyRequested(11, stores=("cheap", "archive"), request_id="req-1"),
        ev.CopyProgress(
            70,
            task_status="success",
            message="Copied 1024 MiB",
            done=("cheap",),
            failed=("archive",),
        ),
        ev.StoreSettled(71, store="cheap", outcome="copied"),
        ev.StoreSettled(71, store="archive", outcome="failed", detail="store full"),
        ev.StoreSettled(72, store="fast", outcome="pruned"),
    )
    text = panel(view)
    assert row(text, "cheap").startswith("✓ ")
    assert row(text, "archive").startswith("✗ ")
    assert "failed (store full)" in row(text, "archive")
    fast = row(text, "fast ")
    assert fast.startswith("✓ ")
    assert "pruned" in fast
    assert "━" not in fast


def test_without_the_image_size_a_copy_shows_bytes_and_rate_but_no_percentage(
    view_and_clock: tuple[UploadPanel, Clock],
) -> None:
    """``volimg replicate`` until the executor sends the size (CopyRequested.image_size)."""
    view, clock = view_and_clock
    feed(
        view,
        clock,
        ev.CopyRequested(1, stores=("cheap",), request_id="req-1"),
        ev.CopyProgress(60, task_status="processing", message="Copied 100 MiB", done=(), failed=()),
        ev.CopyProgress(
            120, task_status="processing", message="Copied 200 MiB", done=(), failed=()
        ),
    )
    cheap = row(panel(view), "cheap")
    assert "200.0 MiB/?" in cheap
    assert "1.7 MiB/s" in cheap
    assert "%" not in cheap

    feed(
        view,
        clock,
        ev.CopyProgress(
            150,
            task_status="processing",
            message="Copied 300 MiB",
            done=(),
            failed=(),
            image_size=GIB,
        ),
    )
    assert "300.0 MiB/1.0 GiB  29%" in row(panel(view), "cheap")


def test_the_panel_has_colour_only_when_asked(view_and_clock: tuple[UploadPanel, Clock]) -> None:
    view, clock = view_and_clock
    upload_then_copy(view, clock)
    feed(view, clock, ev.UploadFinished(10, image=IMAGE))
    assert _COLOUR.search(panel(view, colour=True))
    assert not _COLOUR.search(panel(view, colour=False))


# --- not a terminal ----------------------------------------------------------------------


def plain_log(*events: ev.Event) -> list[str]:
    stream = io.StringIO()
    log = _LineLog(
        Console(file=stream), lambda: datetime(2026, 11, 25, 13, 44, tzinfo=timezone.utc)
    )
    for event in events:
        log.write(event)
    return stream.getvalue().splitlines()


def test_plain_lines_add_a_percentage_at_most_every_ten_seconds() -> None:
    copying = [
        ev.CopyProgress(
            12 + second,
            task_status="processing",
            message=f"Copied {8 * second} MiB",
            done=(),
            failed=(),
        )
        for second in range(1, 31)
    ]
    lines = plain_log(
        ev.UploadFinished(10, image=IMAGE),
        ev.CopyRequested(11, stores=("cheap", "archive"), request_id="req-1"),
        *copying,
        ev.CopyProgress(
            43, task_status="processing", message="Copied 1024 MiB", done=("cheap",), failed=()
        ),
    )
    progress = [line for line in lines if "replicate: task" in line]
    assert all(line.startswith("2026-11-25T13:44:00Z ") for line in lines)
    assert progress[0].endswith("Copied 8 MiB; copied -, failed -; cheap 0% of 1.0 GiB")
    assert "Copied 88 MiB; copied -, failed -; cheap 8% of 1.0 GiB" in progress[1]
    assert "Copied 168 MiB" in progress[2]
    assert "cheap 16% of 1.0 GiB" in progress[2]
    assert len(progress) == 4  # at 13, 23 and 33 s; then cheap done, at once (43 s)
    assert progress[-1].endswith("copied cheap, failed -")  # the old message is not archive's
    assert PERCENT_EVERY == 10


def test_a_state_change_is_a_line_at_once() -> None:
    lines = plain_log(
        ev.UploadProgress(1, image_status="queued", volume_status="uploading"),
        ev.UploadProgress(2, image_status="saving", volume_status="uploading"),
        ev.UploadProgress(3, image_status="active", volume_status="uploading", image_size=GIB),
        ev.UploadProgress(4, image_status="active", volume_status="available", image_size=GIB),
    )
    assert [line.split(" ", 1)[1] for line in lines] == [
        "wait: image queued, volume uploading",
        "wait: image saving, volume uploading",
        "wait: image active (1.0 GiB), volume uploading",
        "wait: image active (1.0 GiB), volume available",
    ]


# --- the command line: --no-color, NO_COLOR, TERM=dumb -------------------------------------


def _upload_on_a_terminal(cloud: CloudUnderTest, *args: str) -> str:
    app = AppContext(poll_interval=0.02, force_terminal=True)
    result = CliRunner().invoke(
        cli, ["--os-cloud", cloud.admin_cloud, *args, "upload", "boot-vol"], obj=app
    )
    assert result.exit_code == 0, result.stderr
    return result.stderr


def test_a_terminal_gets_colour_and_no_color_takes_it_away(
    sandbox_cloud: CloudUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert _COLOUR.search(_upload_on_a_terminal(sandbox_cloud))
    assert not _COLOUR.search(_upload_on_a_terminal(sandbox_cloud, "--no-color"))
    monkeypatch.setenv("NO_COLOR", "1")
    assert not _COLOUR.search(_upload_on_a_terminal(sandbox_cloud))


def test_a_dumb_terminal_gets_plain_timestamped_lines(
    sandbox_cloud: CloudUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "dumb")
    stderr = _upload_on_a_terminal(sandbox_cloud)
    assert "\x1b[" not in stderr
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")
    assert all(stamp.match(line) for line in stderr.splitlines()), stderr


def test_a_line_above_the_live_panel_is_printed_as_it_is_not_as_markup(
    view_and_clock: tuple[UploadPanel, Clock],
) -> None:
    """A volume or store named like rich markup ("[red]x") is text, not a style."""
    from volimg.live import live_panel
    from volimg.progress import milestone

    view, _ = view_and_clock
    console = Console(record=True, force_terminal=True, width=110)
    with live_panel(console, view, milestone, refresh=4) as sink:
        sink(ev.Notice(0.1, message="volume [red]x[/red] is [bold]busy"))
    assert "note: volume [red]x[/red] is [bold]busy" in console.export_text()


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("tty", "force", "env", "expected"),
    [
        (False, None, {}, False),
        (True, None, {}, True),
        (False, True, {}, True),
        (True, False, {}, False),
        (False, None, {"FORCE_COLOR": "1"}, True),
        (False, None, {"FORCE_COLOR": ""}, False),
        (False, None, {"TTY_COMPATIBLE": "1"}, True),
    ],
)
def test_plain_output_only_where_rich_would_not_see_a_terminal_either(
    tty: bool,
    force: bool | None,
    env: dict[str, str],
    expected: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from volimg.render import might_be_terminal

    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stream = _Stream(tty)
    assert might_be_terminal(stream, force) is expected
    if not expected:  # rich agrees that this is no terminal
        assert Console(file=stream, force_terminal=force).is_terminal is False


def test_a_plain_line_loses_the_control_codes_rich_would_strip() -> None:
    """A cloud's message with a carriage return must not overwrite a cron log's line."""
    from volimg.render import PlainOutput, say

    stream = io.StringIO()
    say(PlainOutput(stream), "volimg: error: Cinder says\r\nbad\fthing\a")
    assert stream.getvalue() == "volimg: error: Cinder says\nbadthing\n"
