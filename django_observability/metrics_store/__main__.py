"""``python -m django_observability.metrics_store clear|compact|status [DIR]``."""

from __future__ import annotations

import json
import logging

from django_observability.metrics_store.compaction import clear, compact_dead
from django_observability.metrics_store.files import ENVIRON, StoreBusy, directory
from django_observability.metrics_store.state import store_state


def main(argv: list[str] | None = None) -> int:
    """``python -m django_observability.metrics_store clear|compact|status [DIR]``.

    For servers without hooks (uvicorn ``--workers``): clear the store before
    starting them. ``compact`` and ``status`` help an operator look.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m django_observability.metrics_store")
    parser.add_argument("action", choices=("clear", "compact", "status"))
    parser.add_argument("directory", nargs="?", default=None, help=f"default: ${ENVIRON}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = args.directory or directory()
    if path is None:
        print(f"{ENVIRON} is not set and no directory was given", file=sys.stderr)
        return 2
    if args.action == "clear":
        return 0 if clear(path) else 1
    if args.action == "compact":
        try:
            count = compact_dead(path)
        except (OSError, StoreBusy) as exc:
            print(f"could not compact {path}: {exc}", file=sys.stderr)
            return 1
        print(f"compacted {count} exited process(es) in {path}")
        return 0
    state = store_state(path)
    assert state is not None
    print(
        json.dumps(
            {
                "path": state.path,
                "exists": state.exists,
                "writable": state.writable,
                "free_bytes": state.free_bytes,
                "files": state.files,
                "size_bytes": state.size_bytes,
                "error": state.error,
            }
        )
    )
    return 0 if state.writable else 1


if __name__ == "__main__":
    raise SystemExit(main())
