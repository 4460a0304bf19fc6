"""Which broker(s) a whole-stack fault scenario runs on in this run.

Every scenario parametrized with :func:`broker_variants` is written for both brokers the product
supports (the embedded amqtt broker and Mosquitto, started with the config ``uns init``
generated for it). Running each on both doubled the slowest part of the suite and pushed it past
its 15-minute budget on a 2-core machine, so the default run takes each scenario on one broker,
named at the test and chosen so that both brokers carry fault scenarios; the broker restarts,
where the broker's own behaviour is the subject, always run on both.

``UNS_TEST_BROKERS=all ./scripts/test`` runs every scenario on both brokers (before a release,
or after a change to the MQTT layer).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

BROKERS = ("embedded", "mosquitto")


def every_broker() -> bool:
    return os.environ.get("UNS_TEST_BROKERS", "").strip().lower() == "all"


def broker_variants(default: str) -> list[Any]:
    """The ``broker`` parameters: ``default`` only, or both with ``UNS_TEST_BROKERS=all``.
    The Mosquitto variant carries the ``mosquitto`` mark (it needs the binary)."""
    if default not in BROKERS:
        raise ValueError(f"unknown broker {default!r}; one of {BROKERS}")
    return _params(BROKERS if every_broker() else (default,))


def both_brokers() -> list[Any]:
    """Both brokers in every run: for scenarios about the broker itself (its restarts)."""
    return _params(BROKERS)


def _params(names: tuple[str, ...]) -> list[Any]:
    return [pytest.param(name, marks=pytest.mark.mosquitto) if name == "mosquitto" else name for name in names]
