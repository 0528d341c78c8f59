"""``weir check -c FILE`` (interfaces.md §1): print every problem, exit 0 or 1.

The lead's ``appliance/cli.py`` parses the arguments and calls ``run_check``.
"""

from __future__ import annotations

import sys

from .load import check


def run_check(path: str) -> int:
    """Print problems to stderr (one ``FILE:LINE: key: message`` line each) and
    ``FILE: configuration is valid`` to stdout when there are no errors.

    Returns the exit code: 0 when valid (warnings allowed), 1 otherwise.
    """
    problems = check(path)
    for problem in problems:
        print(problem, file=sys.stderr)
    if any(problem.severity == "error" for problem in problems):
        return 1
    print(f"{path}: configuration is valid")
    return 0
