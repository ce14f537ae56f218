"""``python -m shoal.integrations.django.warm --size N``: the Django pool's refill.

Started detached at the end of a run, with the run's Django plan in the environment
(``SHOAL_DJANGO_PLAN``) and Django's settings module as the run had it: Django is set up
here, each test database's migrated schemas are built through :func:`shoal.setups.run`
(verified, under a building name, published by rename) until ``N`` are ready.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import psycopg

from shoal import naming, refill_log, setups
from shoal.embedded import default_home
from shoal.errors import ShoalError, first_line
from shoal.integrations.django.plan import DjangoPlan
from shoal.namespace import fresh
from shoal.refill_log import RefillRecord

DEFAULT_TIMEOUT_S = 300.0


def warm(
    plan: DjangoPlan, size: int, *, timeout: float = DEFAULT_TIMEOUT_S, quiet: bool = False
) -> dict[str, str]:
    """Top up every fingerprinted test database's pool to ``size``; database → error.

    The one path that builds Django pool schemas: the background refill after a run and
    ``shoal pool warm`` both come here."""
    from shoal.pg import pool

    deadline = time.monotonic() + timeout
    namespace = fresh().token  # its own lease: the run that planned it may be gone
    errors: dict[str, str] = {}
    for target in plan.plan.targets:
        if target.fingerprint is None or target.setup_spec is None:
            continue
        try:
            setup = setups.load(
                target.setup_spec,
                key=f"databases.{target.name}.setup",
                source="the Django plan",
                root=plan.plan.root,
            )
            result = pool.warm(
                replace(target, setup=setup),
                target.fingerprint,
                size,
                namespace=namespace,
                tail=plan.plan.tail,
                ddl_slots=plan.plan.ddl_slots,
                timeout=plan.plan.connect_timeout,
                deadline=deadline,
                project=plan.plan.project,
            )
            if not quiet:
                fingerprint = target.fingerprint[: naming.POOL_FINGERPRINT_CHARS]
                print(
                    f"{naming.django_listing_name(target.name)}: fingerprint {fingerprint}, "
                    f"built {len(result.built)}, ready {result.ready_after}",
                    flush=True,
                )
        except (ShoalError, OSError, psycopg.Error) as exc:
            errors[target.name] = first_line(exc)
            listed = naming.django_listing_name(target.name)
            print(f"Error: {listed}: {errors[target.name]}", file=sys.stderr)
    return errors


def main(argv: list[str]) -> int:
    size = int(argv[argv.index("--size") + 1]) if "--size" in argv else 2
    text = os.environ.get(naming.ENV_DJANGO_PLAN)
    if not text:
        print(f"Error: {naming.ENV_DJANGO_PLAN} is not set", file=sys.stderr)
        return 2
    plan = DjangoPlan.from_json(text)
    os.chdir(plan.plan.root)
    errors = warm(plan, size)
    # Recorded as `shoal pool warm` records it: the next run's summary reports a failure.
    home = Path(plan.plan.home) if plan.plan.home else default_home()
    record = RefillRecord(
        refill_log.now(), plan.plan.namespace, errors, os.environ.get(naming.ENV_REFILL_LOG)
    )
    refill_log.write(home, plan.plan.root, record)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
