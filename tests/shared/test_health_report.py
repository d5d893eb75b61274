"""`Health.report`: a check that passes `Degraded` keeps the service ready and says why (pure)."""

from __future__ import annotations

from shared.health import Degraded, Health


async def ok() -> bool:
    return True


async def degraded() -> Degraded:
    return Degraded("replicas not current (node down or catching up): ACCOUNT@n2")


async def down() -> bool:
    return False


async def test_degraded_is_ready_with_its_reason_and_down_is_not() -> None:
    working = Health("svc", checks={"database": ok, "nats": degraded})
    assert await working.report() == (True, {
        "database": "ok", "nats": "degraded: replicas not current (node down or catching up): ACCOUNT@n2"})
    broken = Health("svc", checks={"database": down, "nats": degraded})
    ready, results = await broken.report()
    assert not ready and results["database"] == "unavailable"
