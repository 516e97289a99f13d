"""``volimg completion``: print the shell's completion script.

Not to be confused with ``volimg.completion``, which answers the shell's questions
(volume, image, store and cloud names) and which this command imports lazily, by its
absolute name, for the script itself.
"""

from __future__ import annotations

import click

#: The shells ``volimg completion`` prints a script for (click's built-in ones).
SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    Install it with eval "$(volimg completion bash)" in ~/.bashrc (zsh: the same in
    ~/.zshrc; fish: save it as ~/.config/fish/completions/volimg.fish). Commands,
    options and their values complete, and VOLUME, IMAGE and STORE from the cloud.
    """
    from volimg.completion import script

    root = click.get_current_context().find_root().command
    click.echo(script(root, shell))
