"""Which keys hold secrets, and secrets inside URLs: the rules every log line follows.

A key is sensitive when one of the redaction words matches it. Keys and words
are compared in a normal form: split into words at ``_``, ``-``, ``.``, other
punctuation and camelCase humps, lower-cased. A word of
:data:`SUBSTRING_MIN` letters or more (``password``, ``secret``, ``token``)
matches anywhere in the key with the separators taken out, so
``userPassword``, ``x-api-key`` and ``csrfmiddlewaretoken`` match; a shorter
word (``auth``, ``pin``, ``otp``, ``ssn``) matches whole words of the key only,
so ``auth_header`` and ``PIN`` match while ``author``, ``spinner``,
``shipping`` and ``opinion`` do not.

In text, :meth:`Redactor.mask_text` masks the value of every query parameter
whose name is sensitive (``?token=abc&page=2`` becomes
``?token=[REDACTED]&page=2``), in a URL, a path, a request line or a bare
query string, and the password of a URL's user information
(``postgres://app:secret@db/x`` becomes ``postgres://app:[REDACTED]@db/x``).
Text without ``=`` or ``@`` is returned at the cost of two character scans.

Projects add words with ``OBSERVABILITY_LOG_REDACT_KEYS`` (read when first
needed, again after :func:`reset`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

from django.conf import settings

__all__ = [
    "DEFAULT_REDACT_KEYS",
    "REDACTED",
    "SUBSTRING_MIN",
    "Redactor",
    "key_words",
    "project_keys",
    "reset",
]

REDACTED = "[REDACTED]"

# Words of this many letters or more match inside a key; shorter ones match
# whole words only ("auth" is not "author", "pin" is not "shipping").
SUBSTRING_MIN = 5

# The floor: the deny-list of Sentry's EventScrubber (credentials, session and
# CSRF cookies and headers of the common frameworks), in our matching; plus
# payment and identity fields. IP addresses are not here: the access line
# carries client.ip on purpose (add "ip_address", "x_forwarded_for" ... with
# OBSERVABILITY_LOG_REDACT_KEYS to drop them).
DEFAULT_REDACT_KEYS: tuple[str, ...] = (
    # credentials
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "auth",
    "authorization",
    "credential",
    "api_key",
    "private_key",
    "signature",
    "jwt",
    # sessions and CSRF (Django, Express, PHP, Rails, Tornado, Angular ...)
    "session",
    "sessid",
    "connect.sid",
    "csrf",
    "xsrf",
    "cookie",
    "symfony",
    # payment
    "card_number",
    "credit_card",
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "pan",
    "iban",
    "security_code",
    # identity and one-time codes
    "ssn",
    "social_security",
    "otp",
    "totp",
    "pin",
)

CACHE_SIZE = 4096  # distinct keys whose verdict a Redactor remembers

# Word boundaries inside a key: punctuation and spaces, lower->upper
# ("userPassword"), and an acronym's end ("CSRFToken" -> "CSRF", "Token").
_SPLIT = re.compile(r"[^0-9A-Za-z]+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

# A query parameter: at the start of the text or after ? or &, a name without
# spaces, slashes or separators, "=", and the value up to the next separator.
_PARAM = re.compile(r"(^|[?&])([^=&?#\s/\"'<>]+)=([^&#\s\"'<>]*)")
# scheme://user:password@ (the password is group 2).
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^/:@\s?#\"'<>]*):([^/@\s?#\"'<>]*)@")


def key_words(key: str) -> list[str]:
    """``key`` split into lower-case words: ``"X-CSRFToken"`` -> ``["x", "csrf", "token"]``."""
    return [word.lower() for word in _SPLIT.split(key) if word]


class _Matcher:
    """A set of redaction words, compiled: long ones as one pattern, short ones as a set."""

    def __init__(self, words: Iterable[str]) -> None:
        long: set[str] = set()
        self.short: set[str] = set()
        for word in words:
            parts = key_words(word) if isinstance(word, str) else []
            if not parts:
                continue
            joined = "".join(parts)
            if len(joined) >= SUBSTRING_MIN:
                long.add(joined)
            elif len(parts) == 1:
                self.short.add(joined)
            else:  # "x.y": two short words in a row, matched on the joined words
                long.add(joined)
        self.long = re.compile("|".join(map(re.escape, sorted(long)))) if long else None

    def __call__(self, key: str) -> bool:
        words = key_words(key)
        if self.short and not self.short.isdisjoint(words):
            return True
        return self.long is not None and self.long.search("".join(words)) is not None


_project: tuple[str, ...] | None = None
#: Grows at each :func:`reset`: a Redactor whose words were read at an older one reads again.
generation = 0


def project_keys() -> tuple[str, ...]:
    """``OBSERVABILITY_LOG_REDACT_KEYS`` (valid words only), cached until :func:`reset`.

    Empty while the settings are not loaded (a server's master before Django),
    and not cached then: read again once they are.
    """
    global _project
    keys = _project
    if keys is not None:
        return keys
    if not settings.configured:
        return ()
    try:
        from django_observability.conf import SETTINGS

        keys = tuple(SETTINGS["LOG_REDACT_KEYS"].valid_value())
    except Exception:  # broken settings must not cost the log line
        keys = ()
    _project = keys
    return keys


def reset() -> None:
    """Forget the project's words (a changed setting): read again on the next line."""
    global _project, generation
    _project = None
    generation += 1


class Redactor:
    """The redaction rules of one formatter or filter: ``words`` plus the project's.

    Verdicts per key are remembered (at most :data:`CACHE_SIZE`); they are
    forgotten when the project's words change (see :meth:`refresh`).
    """

    def __init__(self, words: Iterable[str]) -> None:
        self.words = tuple(word for word in words if isinstance(word, str) and word)
        self._project: tuple[str, ...] | None = None
        self._matcher = _Matcher(self.words)
        self._verdicts: dict[Any, bool] = {}
        #: Incremented whenever the rules change: callers that cache decisions compare it.
        self.version = 0
        #: The module's :data:`generation` the project's words were read at (-1: not yet,
        #: or read before the settings were loaded).
        self.generation = -1

    def refresh(self) -> None:
        """Pick up a change of ``OBSERVABILITY_LOG_REDACT_KEYS`` (cheap when none)."""
        if self.generation == generation:
            return
        keys = project_keys()
        if _project is not None:  # the settings' words, final until the next reset()
            self.generation = generation
        if keys is not self._project:
            self._project = keys
            self._matcher = _Matcher((*self.words, *keys))
            self._verdicts = {}
            self.version += 1

    def is_sensitive(self, key: Any) -> bool:
        """Whether values under ``key`` are redacted (any key: text of non-strings)."""
        verdict = self._verdicts.get(key)
        if verdict is None:
            try:
                verdict = self._matcher(key if type(key) is str else str(key))
            except Exception:
                verdict = False
            if len(self._verdicts) < CACHE_SIZE:
                self._verdicts[key] = verdict
        return verdict

    def mask_text(self, text: str) -> str:
        """``text`` with sensitive query parameters and URL passwords masked.

        The same object comes back when there is nothing to mask.
        """
        out = text
        if "=" in out:
            masked, found = _PARAM.subn(self._param, out)
            if found:
                out = masked
        if "@" in out and "://" in out:
            masked, found = _USERINFO.subn(_userinfo, out)
            if found:
                out = masked
        return text if out == text else out

    def _param(self, match: re.Match[str]) -> str:
        name = match.group(2)
        if not self.is_sensitive(unquote_plus(name) if "%" in name or "+" in name else name):
            return match.group(0)
        return f"{match.group(1)}{name}={REDACTED}"


def _userinfo(match: re.Match[str]) -> str:
    return f"{match.group(1)}:{REDACTED}@"
