"""Drive a running simulator over OPC UA (what ``uns sim fault`` and ``uns sim batch`` use).

Arguments are wrapped in explicitly typed Variants: asyncua would otherwise send a Python int as
Int64 where the method declares UInt32.
"""

from __future__ import annotations

from typing import Any

from asyncua import Client, ua

from simulator.catalog import SIMULATION_OBJECT
from simulator.config import NAMESPACE_URI


def double(value: float) -> ua.Variant:
    return ua.Variant(float(value), ua.VariantType.Double)


def uint32(value: int) -> ua.Variant:
    return ua.Variant(int(value), ua.VariantType.UInt32)


def int32(value: int) -> ua.Variant:
    return ua.Variant(int(value), ua.VariantType.Int32)


def boolean(value: bool) -> ua.Variant:
    return ua.Variant(bool(value), ua.VariantType.Boolean)


def string(value: str) -> ua.Variant:
    return ua.Variant(str(value), ua.VariantType.String)


async def call_method(
    endpoint: str,
    owner: str,
    method: str,
    *args: ua.Variant,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = 10.0,
) -> list[Any]:
    """Call ``<owner>/<method>`` (owner = the line name or ``Simulation``) and return its outputs.

    Raises ``asyncua.ua.UaStatusCodeError`` (e.g. BadInvalidState) when the simulator refuses.
    """
    client = Client(endpoint, timeout=timeout_s)
    client.session_timeout = 600_000  # what asyncua servers grant anyway; avoids a warning
    if username is not None:
        client.set_user(username)
        client.set_password(password or "")
    async with client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        parent = client.get_node(ua.NodeId(owner, ns))
        result = await parent.call_method(ua.NodeId(f"{owner}/{method}", ns), *args)
    if result is None:
        return []
    return list(result) if isinstance(result, list) else [result]


async def call_simulation(endpoint: str, method: str, *args: ua.Variant, **login: Any) -> list[Any]:
    """Call a test hook on ``Objects/Simulation`` (InjectFault, RestartServer, ForceStop...)."""
    return await call_method(endpoint, SIMULATION_OBJECT, method, *args, **login)
