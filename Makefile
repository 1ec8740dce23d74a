# cxdesk — `make run` serves the demo, `make test` runs every test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format serve worker migrate demo clean venv

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

lint: venv
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

format: venv
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

## serve: the production shape locally — gunicorn (HTTP), uvicorn (websockets), Celery worker + beat.
## Needs REDIS_URL and SECRET_KEY; put a proxy in front that sends /ws/ to :8001 and the rest to :8000.
serve: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput
	$(BIN)/celery -A cxdesk worker -B -Q default,inbound,outbound,webhooks --loglevel=info & \
	$(BIN)/uvicorn cxdesk.asgi:application --host $(HOST) --port 8001 --ws-max-size 65536 & \
	$(BIN)/gunicorn cxdesk.wsgi --bind $(HOST):$(PORT) --workers 2

worker: venv
	$(BIN)/celery -A cxdesk worker -B -Q default,inbound,outbound,webhooks --loglevel=info

clean:
	rm -rf var/cxdesk.sqlite3 var/outbox var/mail var/media
