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
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "cxdesk.urls"
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
            ],
        },
    }
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'cxdesk.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")

# Redis: channel layer, Celery broker and result store, cache. Absent: everything in-process.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a default socket timeout as long as channels_redis' 5 s BRPOP,
            # which kills idle consumers with "Timeout reading from …" (django/channels_redis#422).
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}],
                "prefix": env.str("CHANNELS_PREFIX", default="cxdesk"),
            },
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

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
CELERY_TIMEZONE = "UTC"

# Email out: EMAIL_URL (smtp://user:pass@host:587/?tls=True) or a backend; default: files in var/mail/.
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
    EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="support@cxdesk.localhost")
# ESP inbound webhooks (/hooks/anymail/<esp>/inbound/) are protected by this basic-auth
# secret ("user:password", put it in the ESP's webhook URL) plus the ESP's own signing where it has one.
ANYMAIL = {
    "WEBHOOK_SECRET": env.str("ANYMAIL_WEBHOOK_SECRET", default=""),
    "MAILGUN_WEBHOOK_SIGNING_KEY": env.str("MAILGUN_WEBHOOK_SIGNING_KEY", default=""),
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/desk/"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("pl", "Polski"), ("it", "Italiano"), ("fa", "فارسی")]
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
CXDESK_MAX_BODY_CHARS = env.int("CXDESK_MAX_BODY_CHARS", default=1_000_000)
CXDESK_OUTBOX_DIR = VAR_DIR / "outbox"
CXDESK_DEFAULT_REGION = env.str("CXDESK_DEFAULT_REGION", default="PL")
CXDESK_TICKET_PREFIX = "CX"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "integrations.auth.BearerKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
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
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery.app.trace": {"level": env.str("CELERY_TRACE_LOG_LEVEL", default="WARNING")},
    },
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=PUBLIC_URL.startswith("https"))
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

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
