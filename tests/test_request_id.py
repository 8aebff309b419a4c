import re
import uuid

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
