"""The commands' side of the error boundary: print the outcome, then exit with its code.

``VolimgGroup.invoke`` in ``volimg.cli`` catches what a command raises; these two
helpers end a command that returned. They live below both (a command module never
imports ``volimg.cli``, which imports every command module to register it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from volimg.context import AppContext
    from volimg.events import EventSink
    from volimg.results import Outcome


def exit_with(code: int) -> None:
    if code:
        click.get_current_context().exit(code)


def run_and_report(app: AppContext, work: Callable[[EventSink], Outcome]) -> None:
    """Run with progress on stderr, then the result on stdout, then its exit code.

    Whoever reads the progress may go away (``volimg upload boot-vol 2>&1 | head -3``):
    the work must not depend on it. Progress stops at the first broken pipe and the
    run goes on to its end; the result is then written, and a closed stdout ends the
    command with exit 141 in ``VolimgGroup.invoke``.
    """
    renderer = app.renderer()
    reader_gone = False

    def tolerant(sink: EventSink) -> EventSink:
        def emit(event: Any) -> None:
            nonlocal reader_gone
            if reader_gone:
                return
            try:
                sink(event)
            except BrokenPipeError:
                reader_gone = True

        return emit

    outcome: Outcome | None = None
    try:
        with renderer.progress() as sink:
            outcome = work(tolerant(sink))
    except BrokenPipeError:
        if outcome is None:
            raise
    renderer.outcome(outcome)
    if app.debug and outcome.error is not None:
        # --debug promises the traceback at any step: the executor folds errors into
        # the outcome (which is printed above), so raise the one it caught.
        raise outcome.error
    exit_with(int(outcome.exit_code))
