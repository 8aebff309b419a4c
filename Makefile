# Two commands matter: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR := .demo
# Root installs Debian packages directly; anyone else goes through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Where pyenv provides the other supported interpreters, let nox find them.
export PYENV_VERSION ?= $(shell command -v pyenv >/dev/null 2>&1 && pyenv versions --bare 2>/dev/null | grep -E '^3\.(11|12|13)\.' | sort -V | awk -F. '!seen[$$1"."$$2]++' | paste -sd: -)

.PHONY: venv peers lint docs test test-unit test-matrix demo bench bench-http bench-tasks bench-cache bench-http-client clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Real peers for the tests, from Debian: Prometheus and promtool, amtool; PostgreSQL,
# Redis (a Celery broker, a cache), RabbitMQ, Memcached and the Pushgateway (the tests run
# private servers of their own, never the system's).
PEER_PACKAGES := $(strip \
  $(if $(shell command -v promtool 2>/dev/null),,prometheus) \
  $(if $(shell command -v prometheus 2>/dev/null),,prometheus) \
  $(if $(shell command -v amtool 2>/dev/null),,prometheus-alertmanager) \
  $(if $(wildcard /usr/lib/postgresql/*/bin/pg_ctl),,postgresql) \
  $(if $(shell command -v redis-server 2>/dev/null),,redis-server) \
  $(if $(shell command -v memcached 2>/dev/null),,memcached) \
  $(if $(wildcard /usr/lib/rabbitmq/bin/rabbitmq-server),,rabbitmq-server) \
  $(if $(shell command -v prometheus-pushgateway 2>/dev/null),,prometheus-pushgateway))

peers:
	@if [ -n "$(PEER_PACKAGES)" ]; then \
	  echo "installing Debian packages for the tests: $(sort $(PEER_PACKAGES))"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(sort $(PEER_PACKAGES)); \
	fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The reference in docs/, built into build/docs/ (git-ignored). --strict: any warning
# fails, and mkdocs.yml makes broken links and anchors warnings.
docs: venv
	$(BIN)/mkdocs build --strict

# The whole suite on this interpreter, then the unit tests on the other
# supported Python/Django combinations.
test: venv peers lint docs
	$(BIN)/pytest --durations=15
	$(MAKE) test-matrix

test-unit: venv
	$(BIN)/pytest -m "not peers and not bench"

test-matrix: venv
	$(BIN)/nox

demo: venv
	mkdir -p $(DEMO_DIR)
	cd example_project && ../$(BIN)/python manage.py migrate --noinput
	@echo
	@echo "Serving the example project on http://127.0.0.1:8000 (gunicorn, 2 workers, Prometheus multiprocess mode)"
	@echo "and running its Celery worker (prefork, 2 children, beat embedded; broker: a folder, $(DEMO_DIR)/celery/)"
	@echo "and its django.tasks worker (manage.py db_worker: django-tasks-db, tasks stored in the database)"
	@echo "  http://127.0.0.1:8000/                    the index (JSON, shows the worker pid and request id)"
	@echo "  http://127.0.0.1:8000/api/v1/items/1/     a route with an int converter"
	@echo "  http://127.0.0.1:8000/api/v1/archive/2024/ a re_path route"
	@echo "  http://127.0.0.1:8000/boom/               a view that raises (500)"
	@echo "  http://127.0.0.1:8000/slow/?seconds=1     a slow view"
	@echo "  http://127.0.0.1:8000/metrics             Prometheus metrics (open to loopback)"
	@echo "  http://127.0.0.1:8000/health/?verbose     the health report (/health/live/, /health/ready/ too)"
	@echo "  curl -X POST http://127.0.0.1:8000/api/v1/reports/   enqueues a task: 202 and its id (?kind=fail, ?kind=retry)"
	@echo "  curl -X POST http://127.0.0.1:8000/api/v1/exports/   enqueues a django.tasks task: 202 and its id (?kind=fail)"
	@echo "  http://127.0.0.1:$${EXAMPLE_WORKER_METRICS_PORT:-9808}/metrics             the Celery worker's metrics (tasks, queue wait)"
	@echo "  http://127.0.0.1:$${EXAMPLE_DB_WORKER_METRICS_PORT:-9809}/metrics             the db worker's metrics (the django.tasks tasks)"
	@echo "Logs: one JSON line per record on stdout (access, audit, Django, gunicorn, both workers' with task.id)."
	@echo "Tracing: off; EXAMPLE_TRACING_EXPORTER=console make demo prints spans as JSON lines too."
	@echo "Broker: EXAMPLE_CELERY_BROKER_URL=redis://127.0.0.1:6379/0 make demo uses a Redis server instead."
	@echo "Stop with Ctrl-C (stops all three)."
	@echo
	cd example_project && ../$(BIN)/python run_demo.py $(CURDIR)/$(DEMO_DIR)

# What each stack costs against the anchors: in process, then over HTTP
# (gunicorn on loopback, loaded by wrk; a Python client if wrk is missing).
bench: venv
	$(BIN)/python benchmarks/run.py
	$(MAKE) bench-http
	$(MAKE) bench-tasks
	$(MAKE) bench-cache
	$(MAKE) bench-http-client

bench-tasks: venv
	$(BIN)/python benchmarks/tasks.py

bench-cache: venv
	$(BIN)/python benchmarks/cache.py

bench-http-client: venv
	$(BIN)/python benchmarks/http_client.py

bench-http: venv
	$(BIN)/python benchmarks/over_http.py

clean:
	rm -rf $(VENV) .nox .pytest_cache .ruff_cache $(DEMO_DIR) example_project/db.sqlite3
