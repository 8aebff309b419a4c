import os
import re
import threading
import uuid
import warnings

import pytest

from django_observability.request_id import from_meta, is_valid, meta_key, new_request_id


def test_new_ids_are_version_4_uuids():
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for rid in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
        parsed = uuid.UUID(hex=rid)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_validation():
    assert is_valid("a")
    assert is_valid("A-z_0.9:x")
    assert is_valid("x" * 128)
    assert not is_valid("x" * 129)
    assert not is_valid("")
    assert not is_valid("a b")
    assert not is_valid("ü")
    assert not is_valid("a\n")


def test_from_meta():
    key = meta_key("X-Request-ID")
    assert key == "HTTP_X_REQUEST_ID"
    assert from_meta({key: "abc"}, key) == "abc"
    assert from_meta({key: "abc"}, key, trust_incoming=False) != "abc"
    assert from_meta({key: "bad value"}, key) != "bad value"
    assert from_meta({}, key) != ""


def test_new_ids_draw_the_os_randomness_in_blocks(monkeypatch):
    from django_observability import request_id

    calls = []

    def urandom(n):
        calls.append(n)
        return os.urandom(n)

    monkeypatch.setattr(request_id, "_urandom", urandom)
    request_id._pool.clear()
    ids = {new_request_id() for _ in range(request_id._BLOCK_IDS * 2 + 1)}
    assert len(ids) == request_id._BLOCK_IDS * 2 + 1
    assert calls == [request_id._ID_BYTES * request_id._BLOCK_IDS] * 3


def test_threads_never_get_the_same_id():
    from django_observability import request_id

    request_id._pool.clear()
    results: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def draw(out: list[str]) -> None:
        start.wait()
        for _ in range(3000):
            out.append(new_request_id())

    threads = [threading.Thread(target=draw, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [rid for out in results for rid in out]
    assert len(every) == len(set(every)) == 8 * 3000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_does_not_reuse_its_parents_random_bytes():
    from django_observability import request_id

    request_id._pool.clear()
    new_request_id()  # the parent has drawn a block; most of it is still pooled
    assert len(request_id._pool) == request_id._BLOCK_IDS - 1
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, 3.12+
        pid = os.fork()
    if pid == 0:  # the child: report its first ids, then leave at once
        try:
            os.close(read)
            os.write(write, " ".join(new_request_id() for _ in range(10)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_ids = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent_ids = {new_request_id() for _ in range(10)}
    assert len(child_ids) == 10
    assert not child_ids & parent_ids
