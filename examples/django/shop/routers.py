"""The ledger app lives in the `ledger` database, everything else in `default`."""

from typing import Any


class LedgerRouter:
    def _db(self, model: Any) -> str:
        return "ledger" if model._meta.app_label == "ledger" else "default"

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return self._db(model)

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return self._db(model)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return obj1._state.db == obj2._state.db

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return (db == "ledger") == (app_label == "ledger")
