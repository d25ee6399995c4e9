"""What ``runner.py local`` runs, as a script, for the tests until ``runner.py`` has the subcommand.

``runner.py`` will call ``l3_atom.local.cli.add_arguments`` and ``main`` the
same way; then ``tests/local/helpers.py`` runs ``runner.py local`` and this
file can go.
"""

from __future__ import annotations

import argparse
import logging
import sys

from l3_atom.errors import UserError
from l3_atom.local import cli

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXIT_USAGE = 2


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="runner.py local")
    cli.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    try:
        cli.main(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
