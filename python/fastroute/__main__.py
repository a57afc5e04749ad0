"""Command line: ``fastroute demo`` (also ``python -m fastroute demo``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastroute", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train small models, route a mixed stream, report")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument(
        "--repeat", type=int, default=3, help="copies of the test stream to route (default 3)"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .tools.demo import run_demo

        run_demo(seed=args.seed, repeat=args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
