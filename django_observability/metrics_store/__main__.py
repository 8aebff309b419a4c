"""``python -m django_observability.metrics_store clear|compact|status [DIR]``."""

from __future__ import annotations

import json
import logging
import os
import time

from django_observability.metrics_store.compaction import clear, compact_dead
from django_observability.metrics_store.files import (
    ENVIRON,
    PROCESS_FILE,
    StoreBusy,
    alive,
    directory,
)
from django_observability.metrics_store.state import store_state

# A file written this recently belongs to a process that was alive just now.
RECENT_SECONDS = 60.0


def writers(path: str) -> tuple[set[int], set[int]]:
    """(pids with files that exist, pids with files that seem gone but wrote recently)."""
    live: set[int] = set()
    unseen: set[int] = set()
    now = time.time()
    for name in os.listdir(path):
        match = PROCESS_FILE.fullmatch(name)
        if match is None:
            continue
        pid = int(match.group(2))
        if alive(pid):
            live.add(pid)
            continue
        try:
            if now - os.stat(os.path.join(path, name)).st_mtime < RECENT_SECONDS:
                unseen.add(pid)
        except OSError:
            pass
    return live, unseen


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
    parser.add_argument(
        "--force",
        action="store_true",
        help="clear although processes write there, or compact processes that wrote just now",
    )
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = args.directory or directory()
    if path is None:
        print(f"{ENVIRON} is not set and no directory was given", file=sys.stderr)
        return 2
    if args.action in ("clear", "compact") and not args.force and os.path.isdir(path):
        live, unseen = writers(path)
        if args.action == "clear" and live:
            # Their files would go while they write to them: every value lost.
            print(f"processes {sorted(live)} write to {path}; stop them first", file=sys.stderr)
            return 1
        if args.action == "compact" and unseen:
            # Another pid namespace (a command run outside the server's
            # container) sees live workers as gone.
            print(
                f"processes {sorted(unseen)} wrote to {path} in the last {RECENT_SECONDS:.0f} s "
                "but are not visible from here (another container or pid namespace?); "
                "run this where the server runs, or use --force",
                file=sys.stderr,
            )
            return 1
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
