"""The request side of a command: build, sign, send as DCMD/NCMD, wait for the edge's result.

Used by ``uns cmd send`` and by any service that talks to the broker directly (the MES adapter
may use it or its own Sparkplug host; both put the same bytes on the wire, :mod:`uns.commands.wire`).

What the wire needs from the edge's birth: the metric's **datatype** (the value is normalized to
it before hashing, so a Float is rounded to float32 on both sides) and its **alias** (with
aliases, a CMD carries the alias alone, tck-id-payloads-alias-data-cmd-requirement). The client
learns births from the broker's retained ``$sparkplug/certificates/...`` copies (a
Sparkplug-aware broker such as ours), else from live NBIRTH/DBIRTH after it asks the node for a
rebirth (NCMD ``Node Control/Rebirth``), else from the allowlist rule if one is given (then the
command goes by name, which our edge accepts).

The result arrives as JSON :class:`~uns.commands.model.CommandResult` on
``<line>/_cmd/result/<command_id>``; the client subscribes (QoS 1) before it publishes, so a fast
edge cannot answer before anyone listens.

Usage::

    async with CommandClient("mqtt://broker:1883") as client:
        result = await client.submit(group_id="acme:plant1", edge_node_id="packaging:Line1",
                                     device_id="Filler", metric="SpeedSetpoint", value=120.0,
                                     requested_by="alice", reason="raise rate for order 42",
                                     signers=[Signer("alice", "Alice Archer", alice_key)])
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from uns.commands.allowlist import Allowlist
from uns.commands.checker import DEFAULT_VALIDITY_S, build_request
from uns.commands.model import CommandRequest, CommandResult, SignatureMeaning
from uns.commands.signing import sign_command
from uns.commands.template_members import born_members, member_path, member_value
from uns.commands.values import normalize_value
from uns.commands.wire import CommandWireError, encode_command, result_filter
from uns.isa95 import NamespaceMapping
from uns.mqtt_url import parse_broker_url
from uns.sparkplug.codec import decode_payload
from uns.sparkplug.control import rebirth_request
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import SparkplugError
from uns.sparkplug.model import Template, now_ms
from uns.sparkplug.topic import (
    CERTIFICATES_PREFIX,
    MessageType,
    certificate_filter,
    device_filter,
    is_sparkplug_topic,
    node_topic,
)
from unshub.errors import HubError

log = logging.getLogger(__name__)


class CommandClientError(HubError):
    """Base of the request side's errors."""


class UnknownMetricError(CommandClientError):
    """The target metric is in no birth the client could see, and no allowlist rule types it."""


class ResultTimeoutError(CommandClientError, TimeoutError):
    """No result arrived for the command within the timeout (it may still execute: see the audit)."""

    def __init__(self, request: CommandRequest, timeout_s: float) -> None:
        super().__init__(f"no result for command {request.command_id} ({request.target_label}) within "
                         f"{timeout_s:g} s; check the edge's audit chain before retrying")
        self.request = request


@dataclass(frozen=True)
class Signer:
    """One user's signing identity: the private key stays in the requesting process."""

    user_id: str
    full_name: str
    key: Ed25519PrivateKey
    meaning: SignatureMeaning = SignatureMeaning.AUTHORED


@dataclass(frozen=True, slots=True)
class MetricTarget:
    """What the birth says about a metric: its datatype and alias (None: send by name), and for a
    template instance the instance as born (a write to one of its members is built from it)."""

    datatype: DataType
    alias: int | None
    template: Template | None = None


@dataclass
class _NodeBirths:
    node: dict[str, MetricTarget] | None = None
    devices: dict[str, dict[str, MetricTarget]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def lookup(self, device_id: str | None, metric: str) -> MetricTarget | None:
        table = self.node if device_id is None else self.devices.get(device_id)
        return None if table is None else table.get(metric)


def sign_request(request: CommandRequest, signers: Sequence[Signer], now: int) -> CommandRequest:
    """Add each signer's signature in order (the requester first, approvers after)."""
    for signer in signers:
        request = request.with_signature(sign_command(request, signer.key, user_id=signer.user_id,
                                                      full_name=signer.full_name, meaning=signer.meaning,
                                                      now_ms=now))
    return request


class CommandClient:
    """An MQTT session that sends signed commands and collects their results."""

    def __init__(self, broker_url: str, mapping: NamespaceMapping | None = None, *, client_id: str | None = None,
                 allowlist: Allowlist | None = None, birth_wait_s: float = 6.0,
                 clock: Callable[[], int] = now_ms) -> None:
        self.url = parse_broker_url(broker_url)
        self.mapping = mapping or NamespaceMapping()
        self.client_id = client_id or f"uns-cmd-{uuid.uuid4().hex[:12]}"
        self.allowlist = allowlist
        self.birth_wait_s = birth_wait_s
        self.clock = clock
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None
        self._births: dict[tuple[str, str], _NodeBirths] = {}
        self._watched: set[tuple[str, str]] = set()
        self._result_filters: set[str] = set()
        self._waiting: dict[uuid.UUID, asyncio.Future[CommandResult]] = {}

    # -- lifetime -----------------------------------------------------------------------------

    async def __aenter__(self) -> CommandClient:
        # TCP_NODELAY: a command is one small packet right after our small PUBACK of the previous
        # result; with Nagle it waits for the broker's delayed ACK (~40 ms on Linux) before it leaves
        client = aiomqtt.Client(**self.url.aiomqtt_kwargs(
            identifier=self.client_id, protocol=aiomqtt.ProtocolVersion.V311,
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)))
        await client.__aenter__()
        self._client = client
        self._reader = asyncio.get_running_loop().create_task(self._read(client), name="uns-cmd-reader")
        return self

    async def __aexit__(self, *exc: object) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
        for future in self._waiting.values():
            future.cancel()

    def _require(self) -> aiomqtt.Client:
        if self._client is None:
            raise CommandClientError("CommandClient is not connected; use 'async with'")
        return self._client

    # -- the high-level call ----------------------------------------------------------------------

    async def submit(self, *, group_id: str, edge_node_id: str, device_id: str | None, metric: str, value: Any,
                     requested_by: str, reason: str, signers: Sequence[Signer], validity_s: float | None = None,
                     timeout: float = 10.0) -> CommandResult:
        """Build (value normalized to the birth's datatype), sign, send, and wait for the result."""
        target = await self.resolve(group_id, edge_node_id, device_id, metric)
        if target.template is not None and (path := member_path(value)) is not None:
            member_type = born_members(target.template).get(path)  # a member write: its own datatype
            if member_type is not None:
                value = {path: normalize_value(member_type, member_value(value))}
        request = self.build(group_id=group_id, edge_node_id=edge_node_id, device_id=device_id, metric=metric,
                             value=value, requested_by=requested_by, reason=reason, datatype=target.datatype,
                             validity_s=validity_s)
        request = sign_request(request, signers, self.clock())
        return await self.send(request, timeout=timeout, target=target)

    def build(self, *, group_id: str, edge_node_id: str, device_id: str | None, metric: str, value: Any,
              requested_by: str, reason: str, datatype: DataType | None, validity_s: float | None = None,
              ) -> CommandRequest:
        """An unsigned request; with the allowlist its validity is capped by the rule."""
        now = self.clock()
        if datatype is not None and not isinstance(value, dict):
            value = normalize_value(datatype, value)
        if self.allowlist is not None:
            return build_request(self.allowlist, group_id=group_id, edge_node_id=edge_node_id, device_id=device_id,
                                 metric=metric, value=value, requested_by=requested_by, reason=reason, now_ms=now,
                                 validity_s=validity_s)
        seconds = validity_s if validity_s is not None else DEFAULT_VALIDITY_S
        return CommandRequest(command_id=uuid.uuid4(), group_id=group_id, edge_node_id=edge_node_id,
                              device_id=device_id, metric=metric, value=value, requested_by=requested_by,
                              reason=reason, created_at_ms=now, valid_until_ms=now + max(1, int(seconds * 1000)))

    # -- sending ----------------------------------------------------------------------------------

    async def send(self, request: CommandRequest, *, timeout: float = 10.0,
                   target: MetricTarget | None = None) -> CommandResult:
        """Publish a signed request and wait for its result; :class:`ResultTimeoutError` if none comes."""
        future = await self.dispatch(request, target=target)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ResultTimeoutError(request, timeout) from None
        finally:
            self._waiting.pop(request.command_id, None)

    async def dispatch(self, request: CommandRequest, *,
                       target: MetricTarget | None = None) -> asyncio.Future[CommandResult]:
        """Publish and return a future of the result (for callers that pipeline commands)."""
        client = self._require()
        target = target or await self.resolve(request.group_id, request.edge_node_id, request.device_id,
                                              request.metric)
        await self._subscribe_results(request)
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._waiting[request.command_id] = future
        try:
            topic, data = encode_command(request, datatype=target.datatype, alias=target.alias, now_ms=self.clock(),
                                         template=target.template)
        except CommandWireError:
            self._waiting.pop(request.command_id, None)
            raise
        await client.publish(topic, data, qos=0)  # Sparkplug CMDs are QoS 0 (tck-id-topics-ncmd/dcmd-qos)
        return future

    async def _subscribe_results(self, request: CommandRequest) -> None:
        flt = result_filter(self.mapping, request.group_id, request.edge_node_id, request.device_id)
        if flt not in self._result_filters:
            await self._require().subscribe(flt, qos=1)
            self._result_filters.add(flt)

    # -- births -----------------------------------------------------------------------------------

    async def resolve(self, group_id: str, edge_node_id: str, device_id: str | None, metric: str) -> MetricTarget:
        """Datatype and alias of a metric: certificate, live birth after a rebirth request, or allowlist."""
        births = await self._watch(group_id, edge_node_id)
        found = births.lookup(device_id, metric)
        if found is not None:
            return found
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.birth_wait_s
        asked = False
        while found is None and loop.time() < deadline:
            births.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(births.changed.wait(), min(0.3, max(0.0, deadline - loop.time())))
            found = births.lookup(device_id, metric)
            if found is None and not asked:
                await self.request_rebirth(group_id, edge_node_id)
                asked = True
        if found is not None:
            return found
        if self.allowlist is not None:
            rule = self.allowlist.find(group_id, edge_node_id, device_id, metric)
            if rule is not None:
                log.warning("no birth of %s/%s seen; sending %s by name with the allowlist's datatype",
                            group_id, edge_node_id, metric)
                return MetricTarget(rule[1].wire_type, None)
        where = f"{group_id}/{edge_node_id}" + (f"/{device_id}" if device_id else "")
        raise UnknownMetricError(f"metric {metric!r} of {where} is in no birth seen within {self.birth_wait_s:g} s "
                                 "(is the edge node online? is the metric name right?)")

    async def request_rebirth(self, group_id: str, edge_node_id: str) -> None:
        """NCMD ``Node Control/Rebirth`` = true, the same bytes the host sends (uns.sparkplug.control)."""
        request = rebirth_request(group_id, edge_node_id, self.clock())
        await self._require().publish(request.topic, request.payload, qos=request.qos, retain=request.retain)

    async def _watch(self, group_id: str, edge_node_id: str) -> _NodeBirths:
        key = (group_id, edge_node_id)
        births = self._births.setdefault(key, _NodeBirths())
        if key not in self._watched:
            self._watched.add(key)
            nbirth = node_topic(group_id, MessageType.NBIRTH, edge_node_id)
            dbirth = device_filter(group_id, MessageType.DBIRTH, edge_node_id)
            await self._require().subscribe([(nbirth, 1), (dbirth, 1), (certificate_filter(nbirth), 1),
                                             (certificate_filter(dbirth), 1)])
        return births

    def _learn_birth(self, topic: str, data: bytes) -> None:
        parts = topic.removeprefix(CERTIFICATES_PREFIX).split("/")
        if len(parts) < 4 or parts[2] not in ("NBIRTH", "DBIRTH"):
            return
        group_id, kind, edge_node_id = parts[1], parts[2], parts[3]
        births = self._births.get((group_id, edge_node_id))
        if births is None:
            return
        message_type = MessageType.NBIRTH if kind == "NBIRTH" else MessageType.DBIRTH
        try:
            payload = decode_payload(data, message_type)
        except SparkplugError as exc:
            log.warning("ignoring an undecodable %s on %s: %s", kind, topic, exc)
            return
        table = {m.name: MetricTarget(m.datatype, m.alias, m.value if isinstance(m.value, Template) else None)
                 for m in payload.metrics
                 if m.name is not None and m.datatype is not None}
        if message_type is MessageType.NBIRTH:
            if not topic.startswith(CERTIFICATES_PREFIX):
                births.devices.clear()  # a new session: device births follow
            births.node = table
        elif len(parts) >= 5:
            births.devices[parts[4]] = table
        births.changed.set()

    # -- the reader ---------------------------------------------------------------------------------

    async def _read(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                topic = message.topic.value
                data = message.payload if isinstance(message.payload, bytes) else bytes(message.payload or b"")
                try:
                    if is_sparkplug_topic(topic) or topic.startswith(CERTIFICATES_PREFIX):
                        self._learn_birth(topic, data)
                    else:
                        self._take_result(topic, data)
                except Exception:  # noqa: BLE001 - a peer's bad message must not end the reader
                    log.exception("cannot handle a message on %s", topic)
        except aiomqtt.MqttError as exc:
            log.warning("command client connection lost: %s", exc)
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(CommandClientError(f"broker connection lost: {exc}"))

    def _take_result(self, topic: str, data: bytes) -> None:
        try:
            result = CommandResult.from_bytes(data)
        except ValueError as exc:
            log.warning("ignoring a bad command result on %s: %s", topic, exc)
            return
        future = self._waiting.get(result.command_id)  # others' results on the line are not ours
        if future is not None and not future.done():
            future.set_result(result)


__all__ = ["CommandClient", "CommandClientError", "MetricTarget", "ResultTimeoutError", "Signer",
           "UnknownMetricError", "sign_request"]
