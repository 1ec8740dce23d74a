# cxdesk — `make run` serves the demo, `make test` runs every test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format serve worker doctor migrate demo clean venv messages

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

## run: set up from nothing, migrate, load demo data, serve on 127.0.0.1:8000 (embedded defaults)
run: venv
	DEBUG=1 $(BIN)/python manage.py migrate --noinput
	DEBUG=1 $(BIN)/python manage.py seed_demo
	DEBUG=1 $(BIN)/python manage.py runserver $(HOST):$(PORT)

## test: lint (ruff format + check) and the whole pytest suite
test: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	DEBUG=1 DATABASE_URL=sqlite:///:memory: $(BIN)/python manage.py makemigrations --check --dry-run
	SECRET_KEY=$${SECRET_KEY:-insecure-test-key} $(BIN)/python -m pytest $(PYTEST_ARGS)

## messages: refresh the catalogues from the code and templates (locale/*/LC_MESSAGES), then
## compile them; translate what comes out empty or fuzzy (tests/cxdesk/test_catalogues.py checks)
messages: venv
	DEBUG=1 $(BIN)/python manage.py makemessages -l en -l pl -l it -l fa -l ru --no-location --no-obsolete \
		-i "tests/*" -i "bench/*" -i "deploy/*" -i "scripts/*" -i "var/*" -i "docs/*"
	DEBUG=1 $(BIN)/python manage.py compilemessages -i .venv -i var

lint: venv
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

format: venv
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

## serve: the production shape on ONE address (default 127.0.0.1:8000): nginx in front
## (installed from Debian if missing), gunicorn (HTTP), uvicorn (/ws/), Celery worker and beat.
## Needs SECRET_KEY and REDIS_URL (and DATABASE_URL for PostgreSQL). Ctrl-C stops it cleanly.
## Scale on one box: make serve SERVE_ARGS="--web 2 --asgi 2 --workers 2". See docs/deploy.md.
serve: venv
	$(BIN)/python deploy/serve.py --listen $(HOST):$(PORT) $(SERVE_ARGS)

worker: venv
	$(BIN)/celery -A cxdesk worker -B -Q default,inbound,outbound,webhooks --loglevel=info

## doctor: check configuration and services, say what to fix
doctor: venv
	$(BIN)/python manage.py doctor

clean:
	rm -rf var/cxdesk.sqlite3 var/outbox var/mail var/media
