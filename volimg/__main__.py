"""``python -m volimg`` and the ``volimg`` console script."""

from volimg.cli import cli


def main() -> None:
    cli(prog_name="volimg")


if __name__ == "__main__":
    main()
