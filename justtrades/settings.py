"""Settings for JustTrades, read from the environment (and `.env`) through django-environ."""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from webhooks.addresses import parse_networks

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
# ENV_FILE points elsewhere (or at nothing) when the project folder's .env must not apply, as in tests.
environ.Env.read_env(os.environ.get("ENV_FILE", str(BASE_DIR / ".env")), overwrite=False)

# Where the product keeps its local state: collected static files, the embedded task queue, the file cache.
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

# Only ever used with DEBUG on; production refuses to start without real values.
_DEVELOPMENT_SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"  # noqa: S105
_DEVELOPMENT_FIELD_KEY = "dGhpcy1pcy1hLWRldmVsb3BtZW50LW9ubHkta2V5ISE="

DEBUG = env.bool("DEBUG", default=False)


def _required_in_production(name: str, development_value: str, how: str) -> str:
    """Return a setting that may only fall back to a development value when DEBUG is on."""
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return development_value
    raise ImproperlyConfigured(
        f"{name} is not set. JustTrades refuses to start without it when DEBUG is off. {how} "
        "Put it in the environment or in the .env file next to manage.py (see .env.example)."
    )


SECRET_KEY = _required_in_production(
    "SECRET_KEY",
    _DEVELOPMENT_SECRET_KEY,
    "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'.",
)
FIELD_ENCRYPTION_KEYS = [
    key.strip()
    for key in _required_in_production(
        "FIELD_ENCRYPTION_KEYS",
        _DEVELOPMENT_FIELD_KEY,
        "Generate one with: python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())'.",
    ).split(",")
    if key.strip()
]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "crispy_forms",
    "crispy_bootstrap5",
    "justtrades",
    "accounts",
    "pineaccess",
    "trading",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "justtrades.urls"
WSGI_APPLICATION = "justtrades.wsgi.application"

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
            ],
        },
    },
]

# Database: SQLite in the project folder by default, PostgreSQL (psycopg 3, pooled) when DATABASE_URL says so.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers run beside the writer; the default rollback journal serialises concurrent webhook
        # writes with second-long stalls. IMMEDIATE takes the write lock at BEGIN so waiting writers queue on
        # the busy timeout instead of failing with "database is locked" on lock upgrade.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file, not memory, for the test database: threads in race tests then wait on the busy timeout
    # as production processes do, instead of failing at once with "table is locked".
    # One file per test process, so test runs side by side never share a database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    if env.bool("DATABASE_POOL", default=True):
        # Django's pool needs CONN_MAX_AGE 0: the pool, not the request cycle, keeps connections open.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        # With the pool, health checks would cost a round trip on every checkout (a fifth of a webhook's
        # time). A connection broken by a database restart fails its request once and is discarded.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN", default=1),
            "max_size": env.int("DATABASE_POOL_MAX", default=10),
            "timeout": env.int("DATABASE_POOL_TIMEOUT", default=10),
        }
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)

# Threads per worker process that execute one signal's decisions side by side (one account each). SQLite
# serialises writers anyway, so there they run one after another.
EXECUTION_THREADS = env.int(
    "EXECUTION_THREADS", default=1 if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" else 8
)
if "pool" in DATABASES["default"].get("OPTIONS", {}):
    # Every fan-out thread holds a connection while it works, beside the task's own.
    pool = DATABASES["default"]["OPTIONS"]["pool"]
    pool["max_size"] = max(pool["max_size"], EXECUTION_THREADS + 2)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

LOGIN_URL = "/login"
LOGIN_REDIRECT_URL = "/dashboard"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Serve straight from the source folders when nothing has been collected (development and tests).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# Sessions and security.
SESSION_TIMEOUT = env.int("SESSION_TIMEOUT", default=3600)
SESSION_COOKIE_AGE = SESSION_TIMEOUT
SESSION_SAVE_EVERY_REQUEST = True  # inactivity, not login age, ends a session
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# HTTPS=true is for deployments behind TLS: secure cookies, redirects and HSTS. Off for plain-HTTP local runs.
HTTPS = env.bool("HTTPS", default=False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
if env.bool("BEHIND_TLS_PROXY", default=HTTPS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Redis carries Celery messages and the shared cache when REDIS_URL is set; otherwise nothing needs a server.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "justtrades",
        }
    }
else:
    # A file cache is shared by every process on the machine (web, worker, beat), unlike local memory.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# Celery. The database is the truth for every queued piece of work; the broker only carries ids.
CELERY_TASK_QUEUE_DIR = VAR_DIR / "queue"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A task not acknowledged within this time (worker lost) is delivered again.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600),
    }
else:
    # The host part means nothing to this transport; naming one keeps kombu from warning on every connection.
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_TASK_QUEUE_DIR),
        "data_folder_out": str(CELERY_TASK_QUEUE_DIR),
        "control_folder": str(VAR_DIR / "queue-control"),
        # The worker scans the folder this often when it finds it empty (kombu's default is 1 s).
        "polling_interval": 0.1,
    }
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TASK_DEFAULT_QUEUE = "default"
# Reconciliation waits on slow or penalised brokers for minutes at worst: its own queue (and worker) keeps
# those waits from holding up signals and orders.
CELERY_TASK_ROUTES = {
    "trading.tasks.reconcile_all": {"queue": "reconcile"},
    "trading.tasks.reconcile_account": {"queue": "reconcile"},
    "trading.tasks.*": {"queue": "orders"},
}

# Product settings (shared/specs/interfaces.md).
REGISTRATION_OPEN = env.bool("REGISTRATION_OPEN", default=False)
# Failed attempts allowed per IP and per account, as "attempts/seconds".
LOGIN_RATE_LIMIT = env.str("LOGIN_RATE_LIMIT", default="10/900")
KEY_RATE_LIMIT = env.str("KEY_RATE_LIMIT", default="10/900")
TRADINGVIEW_URL = env.str("TRADINGVIEW_URL", default="https://www.tradingview.com").rstrip("/")
TRADINGVIEW_USERNAME = env.str("TRADINGVIEW_USERNAME", default="")
TRADINGVIEW_PASSWORD = env.str("TRADINGVIEW_PASSWORD", default="")
TRADOVATE_LIVE_URL = env.str("TRADOVATE_LIVE_URL", default="https://live.tradovateapi.com/v1").rstrip("/")
TRADOVATE_DEMO_URL = env.str("TRADOVATE_DEMO_URL", default="https://demo.tradovateapi.com/v1").rstrip("/")
TRADOVATE_OAUTH_URL = env.str("TRADOVATE_OAUTH_URL", default="https://trader.tradovate.com/oauth")
TRADOVATE_CLIENT_ID = env.str("TRADOVATE_CLIENT_ID", default="")
TRADOVATE_CLIENT_SECRET = env.str("TRADOVATE_CLIENT_SECRET", default="")
TRADOVATE_APP_ID = env.str("TRADOVATE_APP_ID", default="")
TRADOVATE_APP_VERSION = env.str("TRADOVATE_APP_VERSION", default="")
TRADOVATE_CID = env.str("TRADOVATE_CID", default="")
TRADOVATE_SEC = env.str("TRADOVATE_SEC", default="")
WEBHOOK_ALLOWED_IPS = env.list("WEBHOOK_ALLOWED_IPS", default=[])
WEBHOOK_DEDUP_SECONDS = env.float("WEBHOOK_DEDUP_SECONDS", default=2.0)
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
# Parsed once here so a typo stops start-up with a message instead of failing on the first alert.
try:
    WEBHOOK_ALLOWED_NETWORKS = parse_networks(WEBHOOK_ALLOWED_IPS, setting="WEBHOOK_ALLOWED_IPS")
    TRUSTED_PROXY_NETWORKS = parse_networks(TRUSTED_PROXIES, setting="TRUSTED_PROXIES")
except ValueError as error:
    raise ImproperlyConfigured(str(error)) from error
DEFAULT_PINE_IDS = env.list("DEFAULT_PINE_IDS", default=[])

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.IsApprovedUser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "JustTrades API",
    "DESCRIPTION": "Script access and signal-to-order automation for TradingView strategies.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Two fields share the distance-unit choices; one schema enum names them both.
    "ENUM_NAME_OVERRIDES": {"DistanceUnitEnum": "trading.models.choices.DistanceUnit"},
    # Swagger UI from the vendored sidecar package, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # The default request log prints the path, and a webhook path carries the recorder's secret token.
        "django.server": {"handlers": [], "level": "ERROR", "propagate": False},
    },
}
