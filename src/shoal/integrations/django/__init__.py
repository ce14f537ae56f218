"""Django (pytest-django): every PostgreSQL alias of ``settings.DATABASES`` isolated.

Django's test database of each alias (its TEST NAME, default ``test_<NAME>``) is created
once, race-free, and kept; each worker of each invocation gets its own schema in it,
and Django connects with that schema as its only search path and the worker's label in
``OPTIONS``, so ``migrate`` and every test run inside it. Migrations are a setup kind
(``django:<alias>``), so the warm pool holds migrated schemas keyed by a fingerprint of
the migrations.
"""
