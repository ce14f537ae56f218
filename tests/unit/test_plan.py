"""shoal.plan: the one JSON form of a run's plan, and what it leaves out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoal.plan import RunPlan, Target
from shoal.setups import kind_named
from shoal.setups.kind import Setup


class Uncopyable:
    """Stands in for what a setup names (a 220-table MetaData): the plan travels as
    JSON to every worker, and must never copy it on the way."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Uncopyable:
        raise AssertionError("the plan deep-copied its setup")

    def __copy__(self) -> Uncopyable:
        raise AssertionError("the plan copied its setup")


def plan_with_setup() -> RunPlan:
    setup = Setup(kind=kind_named("metadata"), spec="models:metadata", target=Uncopyable())
    target = Target(
        name="app",
        url="host=/run/pg dbname=app",
        control_url="host=/run/pg dbname=postgres",
        setup=setup,
        extensions=("citext",),
        export_env=("DATABASE_URL",),
        fingerprint="ab" * 32,
        lock_footprint=4_208,
    )
    return RunPlan(
        namespace="p1t1r0a0b0c0d",
        origin="runner",
        owner="p1t1",
        project_root=str(Path("/project")),
        configured=True,
        targets=(target,),
        tail=("public",),
        sources={"databases.app.url": "pyproject.toml"},
    )


def test_the_json_form_leaves_the_parsed_setup_alone_and_keeps_its_spec() -> None:
    plan = plan_with_setup()
    text = plan.to_json()  # raises if it copies the setup
    back = RunPlan.from_json(text)
    assert back == plan
    assert back.targets[0].setup is None
    assert back.targets[0].setup_spec == "models:metadata"
    assert back.targets[0].extensions == ("citext",)
    assert back.sources == plan.sources
