"""Settings as Django templates lay them out: read from the environment at import time."""

import os

from psycopg.conninfo import conninfo_to_dict

_server = conninfo_to_dict(os.environ.get("SHOP_DATABASE_URL", "postgresql:///shop"))


def _database(name: str) -> dict[str, object]:
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "HOST": _server.get("host", ""),
        "PORT": _server.get("port", ""),
        "USER": _server.get("user", ""),
        "PASSWORD": _server.get("password", ""),
        "CONN_MAX_AGE": 0,
    }


_name = str(_server.get("dbname") or "shop")
DATABASES = {
    "default": _database(_name),
    # The ledger's tables do not depend on the default database's: it can be set up alone.
    "ledger": {**_database(f"{_name}_ledger"), "TEST": {"DEPENDENCIES": []}},
}
DATABASE_ROUTERS = ["shop.routers.LedgerRouter"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "catalog",
    "ledger",
]
SECRET_KEY = "example-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
