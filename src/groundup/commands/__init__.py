"""The `groundup` subcommands, one module each: `add_parser(subparsers)` declares its flags and
`run(args, argv) -> exit status` does the work. `groundup.cli` parses and dispatches.

To add a subcommand: write `commands/<name>.py` with those two functions and list it in `COMMANDS`.
"""

from groundup.commands import doctor, download, evaluate, export, lr_find, predict, train

COMMANDS = (train, lr_find, evaluate, doctor, download, predict, export)  # in the order `groundup --help` lists them

__all__ = ["COMMANDS"]
