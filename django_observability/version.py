"""The version of django-observability (read by the build, the build-info metric and spans)."""

__version__ = "0.1.0"
