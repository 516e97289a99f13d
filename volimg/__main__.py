"""``python -m volimg`` and the ``volimg`` console script."""

from volimg import signals
from volimg.cli import cli


def main() -> None:
    # Handled here as well as in the CLI's error boundary, so a second signal that comes
    # after the clean stop (while click and the interpreter wind down) still exits at once.
    with signals.handled(keep_after_signal=True):
        cli(prog_name="volimg")


if __name__ == "__main__":
    main()
