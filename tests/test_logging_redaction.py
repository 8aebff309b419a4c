"""django_observability.logging.redaction: which keys are secret, secrets inside URLs."""

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_observability.logging import DEFAULT_REDACT_KEYS, REDACTED, JsonFormatter
from django_observability.logging.redaction import Redactor, key_words, project_keys
from tests.logging_support import SECRET, log_json, log_line

# Sentry's EventScrubber deny-list (sentry_sdk/scrubber.py, DEFAULT_DENYLIST),
# spelled as Sentry spells it: each one must be redacted by default.
SENTRY_DENYLIST = [
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "auth",
    "credentials",
    "mysql_pwd",
    "privatekey",
    "private_key",
    "token",
    "session",
    "csrftoken",
    "sessionid",
    "x_csrftoken",
    "set_cookie",
    "cookie",
    "authorization",
    "x_api_key",
    "aiohttp_session",
    "connect.sid",
    "csrf_token",
    "csrf",
    "_csrf",
    "_csrf_token",
    "PHPSESSID",
    "_session",
    "symfony",
    "user_session",
    "_xsrf",
    "XSRF-TOKEN",
]

PAYMENT_AND_IDENTITY = [
    "card_number",
    "cardNumber",
    "card-number",
    "credit_card_number",
    "cvv",
    "card_cvv2",
    "CVC",
    "pan",
    "iban",
    "security_code",
    "ssn",
    "user_ssn",
    "social_security_number",
    "otp",
    "otp_code",
    "totp",
    "pin",
    "PIN",
    "card_pin",
    "pinCode",
]

OTHER_SHAPES = [
    "userPassword",
    "X-CSRFToken",
    "csrfmiddlewaretoken",
    "HTTP_AUTHORIZATION",
    "Proxy-Authorization",
    "x-api-key",
    "ApiKey",
    "refresh_token",
    "accessToken",
    "client_secret",
    "DB_PASSWD",
    "auth_header",
    "{cookie}i",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "jwt",
]

# Words that hold a short redaction word (auth, pin, pan, otp, ssn, pwd) as
# letters but not as a word of their own, and our own field names.
NOT_SECRET = [
    "author",
    "authority",
    "spinner",
    "shipping",
    "opinion",
    "pinned",
    "company",
    "expand",
    "span.id",
    "spanId",
    "hotpot",
    "lesson",
    "cwd",
    "page",
    "client.ip",
    "user.id",
    "event.duration",
    "http.request.id",
    "db.queries.count",
    "process.pid",
    "url.path",
]


@pytest.fixture
def redactor():
    return Redactor(DEFAULT_REDACT_KEYS)


@pytest.mark.parametrize("key", SENTRY_DENYLIST + PAYMENT_AND_IDENTITY + OTHER_SHAPES)
def test_sensitive_keys(redactor, key):
    assert redactor.is_sensitive(key)


@pytest.mark.parametrize("key", NOT_SECRET)
def test_short_words_match_whole_words_only(redactor, key):
    assert not redactor.is_sensitive(key)


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("X-CSRFToken", ["x", "csrf", "token"]),
        ("userPassword", ["user", "password"]),
        ("http.request.id", ["http", "request", "id"]),
        ("{cookie}i", ["cookie", "i"]),
        ("PHPSESSID", ["phpsessid"]),
        ("card_cvv2", ["card", "cvv2"]),
    ],
)
def test_key_words(key, words):
    assert key_words(key) == words


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "GET /x/?token=abc&password=xyz&page=2 HTTP/1.1",
            f"GET /x/?token={REDACTED}&password={REDACTED}&page=2 HTTP/1.1",
        ),
        (
            "https://shop.example/p?api_key=k&q=1#top",
            f"https://shop.example/p?api_key={REDACTED}&q=1#top",
        ),
        ("token=abc&page=2", f"token={REDACTED}&page=2"),  # a bare query string
        ("/cb?code=1&state=2&access_token=t", f"/cb?code=1&state=2&access_token={REDACTED}"),
        ("https://h/p?Pass%77ord=x&pin=1", f"https://h/p?Pass%77ord={REDACTED}&pin={REDACTED}"),
        ("postgres://app:s3cret@db:5432/shop", f"postgres://app:{REDACTED}@db:5432/shop"),
        (
            "redis://:s3cret@cache:6379/0?password=p",
            f"redis://:{REDACTED}@cache:6379/0?password={REDACTED}",
        ),
        (
            "see https://u:p@h/x and http://h/y?token=t",
            f"see https://u:{REDACTED}@h/x and http://h/y?token={REDACTED}",
        ),
    ],
)
def test_secrets_inside_urls_are_masked(redactor, text, masked):
    assert redactor.mask_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "plain words",
        "/api/v1/items/?page=2&sort=name",
        "a=b",
        "ann@example.com",
        "postgres://app@db/shop",  # a user name alone is not a secret
        "x = token=abc",  # a parameter follows ?, & or the start of the text only
        "",
    ],
)
def test_text_without_secrets_comes_back_as_it_was(redactor, text):
    assert redactor.mask_text(text) is text


# The project's words: OBSERVABILITY_LOG_REDACT_KEYS -----------------------------------


def test_the_project_adds_words_through_the_setting():
    formatter = JsonFormatter()
    extra = {"tax_id": SECRET, "page": "2", "next": "/x?tax_id=" + SECRET}
    assert log_json(formatter=formatter, extra=extra)["tax_id"] == SECRET  # a template now
    with override_settings(OBSERVABILITY_LOG_REDACT_KEYS=["tax_id"]):
        assert project_keys() == ("tax_id",)
        line = log_line(formatter=formatter, extra=extra)
        assert SECRET not in line
        for templates in (True, False):
            data = log_json(formatter=JsonFormatter(templates=templates), extra=extra)
            assert data["tax_id"] == REDACTED
            assert data["next"] == f"/x?tax_id={REDACTED}"
            assert data["page"] == "2"
    assert log_json(formatter=formatter, extra=extra)["tax_id"] == SECRET
    assert project_keys() == ()


@pytest.mark.parametrize("value", ["tax_id", ["tax_id", ""], ["--"], [b"tax"], {"a": 1}, 3])
def test_a_bad_setting_is_a_system_check_error(value):
    with override_settings(OBSERVABILITY_LOG_REDACT_KEYS=value):
        errors = [e for e in run_checks() if e.id == "django_observability.E080"]
        assert len(errors) == 1
        assert "OBSERVABILITY_LOG_REDACT_KEYS" in errors[0].msg
        # At run time the bad value is replaced by the default: lines still come.
        assert project_keys() == ()
        assert log_json(extra={"password": "x"})["password"] == REDACTED


def test_a_good_setting_passes_the_checks():
    with override_settings(OBSERVABILITY_LOG_REDACT_KEYS=("tax_id", "x-tenant-key")):
        assert [e for e in run_checks() if e.id == "django_observability.E080"] == []
