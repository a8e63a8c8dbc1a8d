"""`python -m bench [name] [options]`: run one benchmark by name (default: memory)."""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


def _memory(argv: Sequence[str]) -> int:
    from bench import memory

    return memory.main(argv)


def _dyno(argv: Sequence[str]) -> int:
    from bench import dyno

    return dyno.main(argv)


def _faults(argv: Sequence[str]) -> int:
    from bench import faults

    return faults.main(argv)


def _small(argv: Sequence[str]) -> int:
    from bench import small

    return small.main(argv)


def _big(argv: Sequence[str]) -> int:
    from bench import big

    return big.main(argv)


def _pipeline(argv: Sequence[str]) -> int:
    from bench import pipeline

    return pipeline.main(argv)


def _partsize(argv: Sequence[str]) -> int:
    from bench import partsize

    return partsize.main(argv)


# name → entry point taking the remaining arguments and returning the exit status.
BENCHMARKS: dict[str, Callable[[Sequence[str]], int]] = {
    "memory": _memory,
    "dyno": _dyno,
    "faults": _faults,
    "small": _small,
    "big": _big,
    "pipeline": _pipeline,
    "partsize": _partsize,
}
DEFAULT = "memory"


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
        print(f"usage: python -m bench [{'|'.join(BENCHMARKS)}] [options]  (default: {DEFAULT}; "
              f"'python -m bench NAME --help' for a benchmark's options)")
        return 0
    name, rest = (argv[0], argv[1:]) if argv and not argv[0].startswith("-") else (DEFAULT, argv)
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}; choose from: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    return BENCHMARKS[name](rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
