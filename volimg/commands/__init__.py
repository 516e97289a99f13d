"""volimg's commands, one module a command (as twine's and pipx's ``commands/``).

Each module defines one click command and owns its options, its help text and the
lazy imports of the core it calls; ``options`` holds the option stacks commands
share and ``_boundary`` how a command ends (its outcome printed, its exit code).
``volimg.cli`` imports the command modules and registers them on the group; no
module here imports ``volimg.cli``. A new command is a new module here and one
``cli.add_command`` line (with its import) in ``volimg/cli.py``.
"""
