import multiprocessing
from types import SimpleNamespace

import pytest

from django_observability.metrics import (
    CappedLabel,
    exception_name,
    method_label,
    route_label,
)


@pytest.mark.parametrize(
    ("route", "label"),
    [
        ("", "/"),
        ("items/<int:pk>/", "/items/<int:pk>/"),
        ("^archive/(?P<year>[0-9]{4})/$", "/archive/(?P<year>[0-9]{4})/"),
        ("api/archive/(?P<year>[0-9]{4})/$", "/api/archive/(?P<year>[0-9]{4})/"),
        ("^legacy/(?P<code>[a-z]+)\\Z", "/legacy/(?P<code>[a-z]+)"),
        ("^price/\\$$", "/price/\\$"),
        ("en/about/", "/en/about/"),
    ],
)
def test_route_from_pattern(route, label):
    assert route_label(SimpleNamespace(route=route)) == label


def test_unresolved_route():
    assert route_label(None) == "<unmatched>"
    assert route_label(SimpleNamespace(route=None)) == "<unmatched>"


def test_methods():
    assert method_label("GET") == "GET"
    assert method_label("CONNECT") == "CONNECT"
    assert method_label("PROPFIND") == "_OTHER"
    assert method_label("get") == "_OTHER"
    assert method_label("") == "_OTHER"
    assert method_label(None) == "_OTHER"


def test_exception_name():
    class Local(Exception):
        pass

    assert exception_name(ValueError("x")) == "ValueError"
    assert exception_name(Local()) == "tests.test_labels.test_exception_name.<locals>.Local"
    assert exception_name(KeyError) == "KeyError"


def test_cap_in_one_process():
    cap = CappedLabel("m", 3)
    assert [cap(v) for v in "abcde"] == ["a", "b", "c", "_other", "_other"]
    assert cap("a") == "a"


def _admit(path, values, queue):
    cap = CappedLabel("exception", 5, path)
    queue.put([cap(v) for v in values])


def test_cap_shared_by_processes(tmp_path):
    """Workers writing to one multiprocess directory agree on one set of values."""
    ctx = multiprocessing.get_context("spawn")  # not fork: this test process has threads
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=_admit, args=(str(tmp_path), [f"w{w}-{i}" for i in range(4)], queue))
        for w in range(3)
    ]
    for p in workers:
        p.start()
    results = [queue.get(timeout=20) for _ in workers]
    for p in workers:
        p.join(timeout=20)
    admitted = {v for result in results for v in result if v != "_other"}
    assert len(admitted) == 5
    # A process started later (a restarted worker) sees the same full set.
    late = CappedLabel("exception", 5, str(tmp_path))
    assert late("new-value") == "_other"
    assert all(late(v) == v for v in admitted)
    # Nothing but the admitted values is in the shared file.
    assert set((tmp_path / "labels_exception.txt").read_text().split()) == admitted
