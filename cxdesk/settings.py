"""cxdesk settings: one module, driven by the environment.

Every knob is an environment variable with an embedded default that makes
`make run` work on a laptop with nothing else installed (SQLite under var/,
in-memory channel layer, Celery tasks run eagerly, mail written to var/mail/).
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("CXDESK_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if DEBUG:
        SECRET_KEY = "insecure-dev-key-only-for-debug"  # noqa: S105 - dev only
    else:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment (or DEBUG=1 for local development)."
        )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# The public base URL (scheme://host[:port]) as providers and customers see it; used
# for webhook URLs, signature validation behind a proxy, portal links in mail.
PUBLIC_URL = env.str("PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "anymail",
    "channels",
    "customers",
    "tickets",
    "channels_app",
    "integrations",
    "routing",
    "sla",
    "surveys",
    "kb",
    "accounts",
    "outbox",
    "django_prometheus",
    "cxdesk",  # operator commands only (manage.py doctor); no models
    "audit",
]

MIDDLEWARE = [
    "cxdesk.observability.RequestIdMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "cxdesk.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "cxdesk.middleware.InputCleaningMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "cxdesk.middleware.DeskUserMiddleware",
    "accounts.middleware.StaffLanguageMiddleware",
    "audit.context.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "accounts.middleware.TwoFactorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "cxdesk.urls"
# Django's database sessions, read with a statement written once (cxdesk/sessions.py).
SESSION_ENGINE = "cxdesk.sessions"
WSGI_APPLICATION = "cxdesk.wsgi.application"
ASGI_APPLICATION = "cxdesk.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "tickets.context_processors.desk",
                "audit.context_processors.audit",
            ],
        },
    }
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'cxdesk.sqlite3'}"),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's, with the per-request health check only after a connection rested (cxdesk/postgresql).
    DATABASES["default"]["ENGINE"] = "cxdesk.postgresql"
# Persistent connections: a new PostgreSQL connection per request cost more than the request's
# own queries (bench/README.md). Checked before reuse, so a restarted database is survived.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60 if IS_POSTGRES else 0))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# Parameters bound by the server, not quoted into the SQL by psycopg: less Python per
# statement, and a statement run often on a connection is prepared once (psycopg prepares it
# on its 5th run), so PostgreSQL stops planning it again — planning a lookup on the tickets
# table (20 indexes) costs it several times the lookup. Off for a pooler that cannot keep
# prepared statements (PgBouncer before 1.21 in transaction mode).
if IS_POSTGRES and env.bool("DB_SERVER_SIDE_BINDING", default=True):
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("server_side_binding", True)
    DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)  # Django's default: never
# The inbox's covering indexes (INCLUDE columns) are PostgreSQL's; SQLite (`make run`) builds
# them without the extra columns, which is fine for a demo.
SILENCED_SYSTEM_CHECKS = [] if IS_POSTGRES else ["models.W040"]

# Redis: channel layer, Celery broker and result store, cache. Absent: everything in-process.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout=None: redis-py 8 defaults to 5 s, shorter than the layer's blocking
            # BZPOPMIN, which killed every idle websocket after ~5 s (redis/redis-py#4091).
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None, "socket_connect_timeout": 5}],
                "prefix": env.str("CHANNELS_PREFIX", default="cxdesk"),
            },
        }
    }
    CACHES = {"default": {"BACKEND": "cxdesk.cache.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# The inbox sidebar's counts are kept per agent until a write moves their generation, and at
# most this many seconds (tickets/inbox_cache.py); 0: counted on every page.
CXDESK_INBOX_COUNTS_TTL = env.int("CXDESK_INBOX_COUNTS_TTL", default=15)

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool(
    "CELERY_TASK_ALWAYS_EAGER", default=not (REDIS_URL or env.str("CELERY_BROKER_URL", default=""))
)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "channels_app.tasks.send_message": {"queue": "outbound"},
    "channels_app.tasks.*": {"queue": "inbound"},
    "tickets.tasks.*": {"queue": "default"},
    "routing.tasks.*": {"queue": "default"},
    "sla.tasks.*": {"queue": "default"},
}
CELERY_BEAT_SCHEDULE: dict = {
    "reconcile-twilio": {"task": "channels_app.tasks.reconcile_twilio", "schedule": 300.0},
    "sla-breaches": {
        "task": "sla.tasks.check_breaches",
        "schedule": env.float("CXDESK_SLA_CHECK_SECONDS", default=60.0),
    },
    "poll-imap": {
        "task": "channels_app.tasks.poll_imap",
        "schedule": env.float("CXDESK_IMAP_POLL_SECONDS", default=60.0),
    },
}
CELERY_BEAT_SCHEDULE["outbox-sweep"] = {
    "task": "outbox.tasks.sweep_outbox",
    "schedule": env.float("CXDESK_OUTBOX_SWEEP_SECONDS", default=30.0),
}
CELERY_TIMEZONE = "UTC"
# Our own modules with tasks (apps' tasks.py are autodiscovered).
CELERY_IMPORTS = ("cxdesk.diagnostics", "cxdesk.retention")
# Beat's heartbeat: /readyz and `doctor` tell from it whether beat is running.
CELERY_BEAT_SCHEDULE["beat-heartbeat"] = {
    "task": "cxdesk.diagnostics.beat_heartbeat",
    "schedule": env.float("CXDESK_BEAT_HEARTBEAT_SECONDS", default=60.0),
}
CELERY_BEAT_SCHEDULE["retention"] = {
    "task": "cxdesk.retention.purge_expired",
    "schedule": env.float("CXDESK_RETENTION_EVERY_SECONDS", default=3600.0),
}
# Every task has time limits: a hung provider call ends (soft: an exception the task turns
# into a retry; hard: the worker process is replaced) instead of holding a worker for ever.
CELERY_TASK_SOFT_TIME_LIMIT = env.float("CELERY_TASK_SOFT_TIME_LIMIT", default=120.0)
CELERY_TASK_TIME_LIMIT = env.float("CELERY_TASK_TIME_LIMIT", default=180.0)
# Broker transport options (Redis): how long an unacknowledged (acks_late) message stays
# invisible before redelivery, connect/read timeouts. CELERY_BROKER_TRANSPORT_OPTIONS (JSON)
# adds or overrides any option.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    "socket_connect_timeout": env.float("CELERY_BROKER_SOCKET_CONNECT_TIMEOUT", default=5.0),
    "socket_timeout": env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=30.0),
    "retry_on_timeout": True,
    "health_check_interval": env.int("CELERY_BROKER_HEALTH_CHECK_INTERVAL", default=25),
    # A message taken by a worker that dies without acknowledging it goes back to the queue.
    "unacked_restore_interval": env.float("CELERY_UNACKED_RESTORE_INTERVAL", default=10.0),
    "unacked_restore_throttle": env.int("CELERY_UNACKED_RESTORE_THROTTLE", default=10),
    **env.json("CELERY_BROKER_TRANSPORT_OPTIONS", default={}),
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = env.int("CELERY_BROKER_CONNECTION_MAX_RETRIES", default=None)
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=5.0)

# The outbox (pending work in the database): a claim's lease (longer than the task hard
# time limit: a claim older than this belonged to a dead worker), how often the sweeper
# runs, how long a dispatched row is left to its Celery message before it is sent again,
# the attempt cap for unexpected errors, and how long finished rows are kept.
CXDESK_OUTBOX_LEASE = env.float("CXDESK_OUTBOX_LEASE", default=300.0)
CXDESK_OUTBOX_REDISPATCH_SECONDS = env.float("CXDESK_OUTBOX_REDISPATCH_SECONDS", default=60.0)
CXDESK_OUTBOX_RETRY_BASE = env.float("CXDESK_OUTBOX_RETRY_BASE", default=10.0)
CXDESK_OUTBOX_MAX_ATTEMPTS = env.int("CXDESK_OUTBOX_MAX_ATTEMPTS", default=25)
CXDESK_OUTBOX_KEEP_DAYS = env.int("CXDESK_OUTBOX_KEEP_DAYS", default=7)
# A delivery status for a message we do not know yet is parked and retried this often,
# for at most this long.
CXDESK_STATUS_PARK_RETRY_SECONDS = env.float("CXDESK_STATUS_PARK_RETRY_SECONDS", default=30.0)
CXDESK_STATUS_PARK_SECONDS = env.float("CXDESK_STATUS_PARK_SECONDS", default=3600.0)
# Embedded mode (no broker, no beat): sweep opportunistically after writes instead.
CXDESK_OUTBOX_EAGER_SWEEP = env.bool("CXDESK_OUTBOX_EAGER_SWEEP", default=CELERY_TASK_ALWAYS_EAGER)
if CXDESK_OUTBOX_LEASE <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("CXDESK_OUTBOX_LEASE must be longer than CELERY_TASK_TIME_LIMIT")

# Email out: EMAIL_URL (smtp://user:pass@host:587/?tls=True) or a backend; default: files in var/mail/.
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    _email = env.email_url("EMAIL_URL")
    # `?timeout=10` in the URL (django-environ puts it under OPTIONS) is EMAIL_TIMEOUT.
    if "TIMEOUT" in _email.get("OPTIONS", {}):
        _email["EMAIL_TIMEOUT"] = float(_email["OPTIONS"].pop("TIMEOUT"))
    vars().update(_email)
else:
    EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
    EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))
# Seconds an SMTP connection may block (connect, each command): a hung server is a retry.
EMAIL_TIMEOUT = vars().get("EMAIL_TIMEOUT") or env.float("EMAIL_TIMEOUT", default=30.0)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="support@cxdesk.localhost")
# ESP inbound webhooks (/hooks/anymail/<esp>/inbound/) are protected by this basic-auth
# secret ("user:password", put it in the ESP's webhook URL) plus the ESP's own signing where it has one.
# Without the secret they answer 403 unless this is set (channels_app/esp_webhooks.py).
CXDESK_ANYMAIL_ALLOW_UNAUTHENTICATED = env.bool("CXDESK_ANYMAIL_ALLOW_UNAUTHENTICATED", default=False)
ANYMAIL = {
    "WEBHOOK_SECRET": env.str("ANYMAIL_WEBHOOK_SECRET", default=""),
    "MAILGUN_WEBHOOK_SIGNING_KEY": env.str("MAILGUN_WEBHOOK_SIGNING_KEY", default=""),
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/desk/sign-in/"
LOGIN_REDIRECT_URL = "/desk/"
# Staff sign-in (accounts app, docs/accounts.md): throttling, two-factor, single sign-on.
CXDESK_SIGNIN_MAX_FAILURES = env.int("CXDESK_SIGNIN_MAX_FAILURES", default=5)  # per account and window
CXDESK_SIGNIN_MAX_PER_IP = env.int("CXDESK_SIGNIN_MAX_PER_IP", default=20)
CXDESK_SIGNIN_WINDOW_SECONDS = env.int("CXDESK_SIGNIN_WINDOW_SECONDS", default=900)
# Roles that must use two-factor sign-in (agent, supervisor, admin), e.g. "admin,supervisor".
CXDESK_2FA_REQUIRED_ROLES = env.list("CXDESK_2FA_REQUIRED_ROLES", default=[])
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
# Single sign-on (OpenID Connect, mozilla-django-oidc): on when OIDC_RP_CLIENT_ID is set.
OIDC_RP_CLIENT_ID = env.str("OIDC_RP_CLIENT_ID", default=env.str("OIDC_CLIENT_ID", default=""))
OIDC_RP_CLIENT_SECRET = env.str("OIDC_RP_CLIENT_SECRET", default=env.str("OIDC_CLIENT_SECRET", default=""))
OIDC_OP_ISSUER = env.str("OIDC_OP_ISSUER", default=env.str("OIDC_ISSUER", default=""))  # discovery
OIDC_OP_AUTHORIZATION_ENDPOINT = env.str("OIDC_OP_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT = env.str("OIDC_OP_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT = env.str("OIDC_OP_USER_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT = env.str("OIDC_OP_JWKS_ENDPOINT", default="")
OIDC_RP_SIGN_ALGO = env.str("OIDC_RP_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env.str("OIDC_RP_SCOPES", default="openid email profile")
OIDC_USE_PKCE = env.bool("OIDC_USE_PKCE", default=True)
OIDC_TIMEOUT = env.int("OIDC_TIMEOUT", default=10)
OIDC_CREATE_USER = env.bool("CXDESK_OIDC_CREATE_STAFF", default=False)
CXDESK_OIDC_SATISFIES_2FA = env.bool("CXDESK_OIDC_SATISFIES_2FA", default=True)
CXDESK_OIDC_REQUIRE_VERIFIED_EMAIL = True
if OIDC_RP_CLIENT_ID:
    AUTHENTICATION_BACKENDS.append("accounts.oidc.StaffOIDCBackend")

LANGUAGE_CODE = "en"
# The languages of the desk, the portal, the knowledge base, the chat widget and every
# automatic message. Names are written in their own language (the switchers show them so).
# Adding one: docs/i18n.md.
LANGUAGES = [("en", "English"), ("pl", "Polski"), ("it", "Italiano"), ("fa", "فارسی"), ("ru", "Русский")]
LANGUAGE_COOKIE_NAME = "cxdesk_language"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Upload limits for every public entry point (webhooks, inbound mail, portal, API).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=30 * 1024 * 1024)
CXDESK_MAX_ATTACHMENT_BYTES = env.int("CXDESK_MAX_ATTACHMENT_BYTES", default=25 * 1024 * 1024)
# Uploads stream to a temporary file past 1 MB; a file past the attachment limit is dropped
# while it streams (cxdesk/uploads.py), never read into memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = env.int("FILE_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)
FILE_UPLOAD_HANDLERS = [
    "cxdesk.uploads.AttachmentLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# Stored files (attachments, media) are readable by the service user only.
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
# Bodies that are raw content (mail) rather than form/JSON input: not NUL-checked by
# cxdesk.middleware.InputCleaningMiddleware (their own parsers handle odd bytes).
CXDESK_RAW_BODY_PATHS = ["/hooks/anymail/", "/api/v1/inbound/email/"]
CXDESK_MAX_BODY_CHARS = env.int("CXDESK_MAX_BODY_CHARS", default=1_000_000)
# A whole raw mail posted to /api/v1/inbound/email/ (a 25 MB attachment is ~34 MB encoded).
# Provider webhooks (SMS, WhatsApp, Messenger, Telegram): "queued" answers after one durable
# write of the raw delivery and a worker ingests it (3.5x the acknowledged rate of "inline" and
# a quarter of its p95, bench/README.md); "inline" ingests in the request and answers after the
# message's commit. Queued wherever a Celery worker runs; inline in the embedded `make run`.
CXDESK_WEBHOOKS = env.str("CXDESK_WEBHOOKS", default="inline" if CELERY_TASK_ALWAYS_EAGER else "queued")
if CXDESK_WEBHOOKS not in ("inline", "queued"):
    raise ImproperlyConfigured("CXDESK_WEBHOOKS must be 'inline' or 'queued'")
# Queued deliveries are ingested by at most this many drainers at once (Celery tasks that
# each take batches of pending rows); more use more worker processes at a burst.
CXDESK_WEBHOOK_DRAINERS = env.int("CXDESK_WEBHOOK_DRAINERS", default=2)
# Celery's worker processes run at this nice level: where web and workers share the cores,
# requests (providers' webhooks, agents' pages) come first and the backlog drains after.
CXDESK_WORKER_NICE = env.int("CXDESK_WORKER_NICE", default=10)
CELERY_BEAT_SCHEDULE["webhook-drain-sweep"] = {
    "task": "channels_app.tasks.drain_stale_webhooks",
    "schedule": env.float("CXDESK_OUTBOX_SWEEP_SECONDS", default=30.0),
}
CXDESK_MAX_MAIL_BYTES = env.int("CXDESK_MAX_MAIL_BYTES", default=64 * 1024 * 1024)
CXDESK_OUTBOX_DIR = VAR_DIR / "outbox"
# Attachment virus scanning (tickets/scanning.py): "" (off) or "clamd" (CLAMD_SOCKET, or CLAMD_HOST:CLAMD_PORT).
CXDESK_SCANNER = env.str("CXDESK_SCANNER", default="")
CLAMD_SOCKET = env.str("CLAMD_SOCKET", default="")
CLAMD_HOST = env.str("CLAMD_HOST", default="127.0.0.1")
CLAMD_PORT = env.int("CLAMD_PORT", default=3310)
CLAMD_TIMEOUT = env.float("CLAMD_TIMEOUT", default=30.0)
CXDESK_DEFAULT_REGION = env.str("CXDESK_DEFAULT_REGION", default="PL")
CXDESK_TICKET_PREFIX = "CX"
# Assignees are warned (the bell) when an SLA target of their ticket is due within this many minutes.
CXDESK_SLA_WARNING_MINUTES = env.int("CXDESK_SLA_WARNING_MINUTES", default=30)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "integrations.auth.BearerKeyAuthentication",
        "accounts.auth.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["integrations.auth.IsAgent"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "cxdesk.api_errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["integrations.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api": env.str("CXDESK_API_RATE", default="1200/min")},
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}
# Outbound HTTP (cxdesk/http.py) refuses private/loopback/link-local targets unless this is on
# (on-premise installs whose webhook receivers live on the private network).
CXDESK_ALLOW_PRIVATE_TARGETS = env.bool("CXDESK_ALLOW_PRIVATE_TARGETS", default=False)
# API key guesses: this many unknown keys from one address within the window → 429 for the rest of it.
CXDESK_API_KEY_FAILURES = env.int("CXDESK_API_KEY_FAILURES", default=20)
CXDESK_API_KEY_FAILURE_WINDOW = env.int("CXDESK_API_KEY_FAILURE_WINDOW", default=300)
CXDESK_WEBHOOK_RETRY_BASE = env.float("CXDESK_WEBHOOK_RETRY_BASE", default=10.0)
SPECTACULAR_SETTINGS = {
    "TITLE": "cxdesk API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],  # the contract is public; the data is not
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "cxdesk.api_schema.add_error_responses"],
    "ENUM_NAME_OVERRIDES": {
        "TicketStatusEnum": "tickets.models.Ticket.Status",
        "MessageStatusEnum": "tickets.models.Message.Status",
        "ChannelEnum": "channels_app.models.Channel",
        "IdentityKindEnum": "customers.models.Identity.Kind",
    },
}

# Logs: one JSON object per line (LOG_FORMAT=json, the default without DEBUG) with the request
# id (X-Request-ID from the proxy, or generated) also inside Celery tasks started by a request.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "cxdesk.observability.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "cxdesk.observability.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery.app.trace": {"level": env.str("CELERY_TRACE_LOG_LEVEL", default="WARNING")},
    },
}

# Workers log through LOGGING above (JSON, request id) instead of Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Behind the proxy (deploy/): trust its X-Forwarded-Proto / -Host. Only set these where the
# app servers are reachable through the proxy alone (make serve binds them to 127.0.0.1).
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env.bool("USE_X_FORWARDED_HOST", default=False)
USE_X_FORWARDED_PORT = env.bool("USE_X_FORWARDED_PORT", default=False)

# Prometheus metrics at /metrics, for a scraper holding this bearer token; unset: 404.
CXDESK_METRICS_TOKEN = env.str("CXDESK_METRICS_TOKEN", default="")
PROMETHEUS_EXPORT_MIGRATIONS = False

# Data retention (days; 0 keeps forever), run by beat (cxdesk.retention).
CXDESK_RETAIN_RAW_INBOUND_DAYS = env.int("CXDESK_RETAIN_RAW_INBOUND_DAYS", default=30)
CXDESK_RETAIN_WEBHOOK_DELIVERIES_DAYS = env.int("CXDESK_RETAIN_WEBHOOK_DELIVERIES_DAYS", default=30)
CXDESK_RETAIN_ACTIVITY_DAYS = env.int("CXDESK_RETAIN_ACTIVITY_DAYS", default=180)

# Content-Security-Policy on every response (cxdesk.middleware): self-only scripts and
# styles, no inline script, no remote images (tracking pixels in mail), no framing.
CXDESK_CSP = env.str(
    "CXDESK_CSP",
    default=(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "object-src 'none'; base-uri 'none'"
    ),
)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

if not DEBUG:
    HTTPS = PUBLIC_URL.startswith("https")
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=HTTPS)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SESSION_COOKIE_HTTPONLY = True
    # TLS ends at the reverse proxy, which sets X-Forwarded-Proto (docs/deploy).
    if env.bool("CXDESK_BEHIND_PROXY", default=HTTPS):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if HTTPS else 0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading is a one-way commitment for the whole domain, made by its owner at
        # hstspreload.org; we do not make it for them (set SECURE_HSTS_PRELOAD=1 to opt in).
        SILENCED_SYSTEM_CHECKS = [*SILENCED_SYSTEM_CHECKS, "security.W021"]

# Outbound: attempts per message before it is marked failed (transient errors retry with backoff).
CXDESK_SEND_MAX_ATTEMPTS = env.int("CXDESK_SEND_MAX_ATTEMPTS", default=6)
# Backoff of send retries: base * 2**retry seconds, capped at 10 minutes.
CXDESK_SEND_RETRY_BASE = env.float("CXDESK_SEND_RETRY_BASE", default=5.0)
# At most this many automatic mails (acknowledgements, surveys) per address per hour.
CXDESK_AUTO_REPLY_PER_HOUR = env.int("CXDESK_AUTO_REPLY_PER_HOUR", default=3)

# Web chat (docs/webchat.md). CXDESK_DEMO serves /demo/shop/ (a page embedding the widget) without DEBUG.
CXDESK_DEMO = env.bool("CXDESK_DEMO", default=False)
CXDESK_ACTIVITY_RETENTION_DAYS = env.int("CXDESK_ACTIVITY_RETENTION_DAYS", default=90)
CXDESK_TRACKED_LINK_MAX_AGE = env.int("CXDESK_TRACKED_LINK_MAX_AGE", default=30 * 24 * 3600)
CXDESK_WEBCHAT_MAX_FRAME = env.int("CXDESK_WEBCHAT_MAX_FRAME", default=16 * 1024)
CXDESK_WEBCHAT_MAX_TEXT = env.int("CXDESK_WEBCHAT_MAX_TEXT", default=4000)
CXDESK_WEBCHAT_RATE = env.int("CXDESK_WEBCHAT_RATE", default=20)  # frames per 10 s per visitor socket
CXDESK_WEBCHAT_MAX_ATTACHMENT_BYTES = env.int("CXDESK_WEBCHAT_MAX_ATTACHMENT_BYTES", default=10 * 1024 * 1024)
CXDESK_WEBCHAT_ATTACHMENT_TYPES = env.list(
    "CXDESK_WEBCHAT_ATTACHMENT_TYPES",
    default=["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"],
)
CELERY_BEAT_SCHEDULE["expire-page-views"] = {
    "task": "customers.tasks.expire_page_views",
    "schedule": 6 * 3600.0,
}
