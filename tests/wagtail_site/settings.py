"""A small Wagtail 7/8 site for tests that need the real CMS (run in a subprocess of their own).

``DJANGO_SETTINGS_MODULE=tests.wagtail_site.settings``: Wagtail's apps (its admin at /admin/) and
middleware, our middleware first, our URLs mounted before Wagtail's catch-all
(tests.wagtail_site.urls), two page types (tests.wagtail_site.models) and a
``before_serve_page`` hook that refines the route label by page type
(tests.wagtail_site.wagtail_hooks). The database is SQLite in memory.
"""

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
INSTALLED_APPS = [
    "tests.wagtail_site",
    "wagtail.sites",
    "wagtail.users",
    "wagtail.documents",
    "wagtail.images",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_observability",
]
MIDDLEWARE = [
    "django_observability.middleware.ObservabilityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.wagtail_site.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
STATIC_URL = "/static/"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WAGTAIL_SITE_NAME = "observability tests"
WAGTAILADMIN_BASE_URL = "http://testserver"
OBSERVABILITY_AUTH_TOKEN = "test-token-0123456789"
OBSERVABILITY_AUDIT_MODELS = ["wagtailcore.Page"]
