"""popchain command line (thin layer over chain/, ml/, consensus/, node/)."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("popchain: the command line is being built; see README.md", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
