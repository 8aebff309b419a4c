"""The app's post-import hook (``imports.py``)."""

import sys

import pytest

from django_observability.imports import AfterImport


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    """The name of a fresh, not yet imported module that sets ``VALUE = 1``."""
    name = "observability_hook_probe"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield name
    sys.modules.pop(name, None)


def test_callbacks_run_once_the_module_is_imported(probe_module):
    calls = []
    hook = AfterImport()
    hook.add(probe_module, lambda: calls.append(("first", sys.modules[probe_module].VALUE)))
    hook.add(probe_module, lambda: calls.append(("second", sys.modules[probe_module].VALUE)))
    assert hook in sys.meta_path
    assert calls == []
    __import__(probe_module)
    assert calls == [("first", 1), ("second", 1)]  # after the module ran, in order
    assert hook not in sys.meta_path
    assert hook.waiting() == frozenset()
    hook.add(probe_module, lambda: calls.append("again"))  # already imported: at once
    assert calls[-1] == "again"


def test_two_hooks_waiting_for_one_module_do_not_ask_each_other(probe_module):
    # Two finders each asking the other finders for the same name used to recurse.
    calls = []
    first, second = AfterImport(), AfterImport()
    first.add(probe_module, lambda: calls.append("first"))
    second.add(probe_module, lambda: calls.append("second"))
    __import__(probe_module)
    assert sorted(calls) == ["first", "second"]
    assert first not in sys.meta_path
    assert second not in sys.meta_path


def test_a_failing_callback_does_not_fail_the_import(probe_module, caplog):
    calls = []
    hook = AfterImport()
    hook.add(probe_module, lambda: 1 / 0)
    hook.add(probe_module, lambda: calls.append("next"))
    module = __import__(probe_module)
    assert module.VALUE == 1
    assert calls == ["next"]
    assert "post-import hook" in caplog.text


def test_a_module_that_is_not_there_still_fails_to_import():
    hook = AfterImport()
    hook.add("observability_no_such_module", lambda: None)
    try:
        with pytest.raises(ModuleNotFoundError):
            __import__("observability_no_such_module")
        assert hook.waiting() == frozenset({"observability_no_such_module"})
    finally:
        sys.meta_path.remove(hook)


def test_after_import_of_a_library_that_is_not_installed_waits_for_nothing():
    from django_observability.imports import HOOK, after_import

    assert after_import("observability_not_installed.sub", lambda: None) is False
    assert "observability_not_installed.sub" not in HOOK.waiting()
