"""The request being served and the state kept about it (``context.py``)."""

from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.utils.functional import SimpleLazyObject

from django_observability import context


def test_nothing_is_current_outside_a_request():
    assert context.get_request_id() is None
    assert context.current_request() is None
    context.count_query(0.5)  # no request: nothing to add to, nothing raised


def test_enter_makes_the_request_and_its_id_current_and_leave_undoes_it():
    request = RequestFactory().get("/")
    tokens = context.enter(request, "rid-1")
    try:
        assert request.request_id == context.request_id_of(request) == "rid-1"
        assert context.get_request_id() == "rid-1"
        assert context.current_request() is request
        assert tokens[2] is None  # the caller's slot
    finally:
        context.leave(tokens)
    assert context.get_request_id() is None
    assert context.current_request() is None


def test_queries_are_added_to_the_state_of_the_current_request():
    request = RequestFactory().get("/")
    tokens = context.enter(request, "rid-2")
    try:
        state = context.RequestState(request, None, "GET", "<unmatched>")
        assert context.state_of(request) is state
        context.count_query(0.25)
        context.count_query(0.5)
    finally:
        context.leave(tokens)
    assert state.queries == [2, 0.75]


def test_a_request_without_state():
    request = RequestFactory().get("/")
    assert context.state_of(request) is None
    assert context.span_ids(request) is None
    assert context.request_id_of(request) is None
    assert context.state_of("not a request") is None
    assert context.state_of(None) is None


def test_span_ids_formatted_once_from_the_span_context():
    from opentelemetry.trace import SpanContext, TraceFlags

    request = RequestFactory().get("/")
    state = context.RequestState(request, None, "GET", "<unmatched>")
    state.context = SpanContext(
        0x4BF92F3577B34DA6A3CE929D0E0E4736, 0xF067AA0BA902B7, False, TraceFlags(1)
    )
    expected = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)
    assert context.span_ids(request) == expected
    state.context = None
    assert context.span_ids(request) == expected  # kept, not read again


def test_no_spans_mark():
    request = RequestFactory().get("/")
    assert not context.no_spans(request)
    context.mark_no_spans(request)
    assert context.no_spans(request)


def test_user_id():
    assert context.user_id(None) is None
    assert context.user_id(AnonymousUser()) is None
    assert context.user_id(SimpleNamespace(is_authenticated=True, pk=7)) == "7"
    assert context.user_id(SimpleNamespace(is_authenticated=True, pk=None)) is None


@pytest.mark.parametrize("attribute", ["_cached_user", "_acached_user"])
def test_loaded_user_id_from_a_user_already_loaded(attribute):
    request = RequestFactory().get("/")
    setattr(request, attribute, SimpleNamespace(is_authenticated=True, pk=42))
    assert context.loaded_user_id(request) == "42"


def test_loaded_user_id_never_loads_the_user():
    def load():
        raise AssertionError("the user was loaded")

    request = RequestFactory().get("/")
    assert context.loaded_user_id(request) is None  # no user at all
    request.user = SimpleLazyObject(load)
    assert context.loaded_user_id(request) is None
    request.user = SimpleLazyObject(lambda: SimpleNamespace(is_authenticated=True, pk=3))
    request.user.pk
    assert context.loaded_user_id(request) == "3"
    request.auth = SimpleLazyObject(load)  # an unevaluated lazy auth result: left alone
    assert context.loaded_user_id(request) == "3"


def test_the_user_the_request_ended_with_wins_over_the_cached_one():
    # AuthenticationMiddleware loaded the anonymous session user first; then an
    # API framework's authentication put the token's user in request.user (DRF).
    request = RequestFactory().get("/")
    request._cached_user = AnonymousUser()
    request.user = SimpleLazyObject(lambda: request._cached_user)
    request.user.is_authenticated
    assert context.loaded_user_id(request) is None
    request.user = SimpleNamespace(is_authenticated=True, pk=5)
    assert context.loaded_user_id(request) == "5"
    # ... and logging out ends it anonymous, whoever was cached.
    request._cached_user = SimpleNamespace(is_authenticated=True, pk=6)
    request.user = AnonymousUser()
    assert context.loaded_user_id(request) is None


@pytest.mark.django_db
def test_a_user_returned_by_the_authentication_as_request_auth():
    from django.contrib.auth.models import User

    # django-ninja keeps its auth callback's result in request.auth, and leaves
    # request.user (the session's, lazy) alone.
    user = User(pk=8, username="ninja")
    request = RequestFactory().get("/")
    request.user = SimpleLazyObject(AnonymousUser)
    request.auth = user
    assert context.loaded_user_id(request) == "8"
    request.auth = SimpleLazyObject(lambda: user)  # django_auth returns request.user itself
    assert context.loaded_user_id(request) is None  # not evaluated: not loaded
    request.auth.pk
    assert context.loaded_user_id(request) == "8"
    # A token or claims are not a user: request.user decides.
    request.auth = SimpleNamespace(is_authenticated=True, pk="token-key")
    request.user = SimpleNamespace(is_authenticated=True, pk=9)
    assert context.loaded_user_id(request) == "9"
