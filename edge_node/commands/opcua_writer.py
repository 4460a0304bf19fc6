"""A dedicated OPC UA session per endpoint for command writes, reads and method calls.

Why a session of its own, apart from the subscription session of :mod:`edge_node.opcua.source`:
a command must not queue behind thousands of notifications or a slow re-subscribe, and a
subscription storm must not add latency to a setpoint write. The session is supervised by the
same :class:`edge_node.opcua.connection.OpcUaConnection` as the source's (a new asyncua Client
per attempt, bounded connect, a watchdog read of ``ServerStatus/State``), and :attr:`connected`
tells the command executor when it may execute queued commands. It logs in as the endpoint's
``write_credentials`` user when one is configured, so the subscription session's account can be
read-only on the server (docs/security.md "OPC UA security").

Every call returns the OPC UA StatusCode (uint32) instead of raising for a Bad status, because
the status is part of the command result and the audit record (which keeps the write's and the
read-back's StatusCode). Only a lost session raises (:class:`WriterDisconnectedError`): the executor
decides whether the command may be retried (nothing was sent yet) or has failed (the write may
have happened).

A member of a template instance (an allowlist ``member:`` rule, docs/templates.md) is read and
written by :meth:`OpcUaWriter.read_member` / :meth:`OpcUaWriter.write_member`: of an **object
instance** the member variable found by browse name (each step of a nested path one level down),
written alone; of a **structured variable** the field of its decoded value: read the whole
structure, change that one field, write the whole structure back (OPC UA has no write of a field;
an IndexRange does not address structure fields). A member the node does not have is
``BadNoMatch``, which the executor reports as ``unknown_member``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.common.structures104 import clean_name

from edge_node.errors import EdgeError
from uns.sparkplug.datatypes import DataType

from ..backoff import Backoff
from ..config import OpcUaEndpointConfig
from ..opcua.connection import OpcUaConnection, watch_server_state

log = logging.getLogger("edge_node.opcua_writer")  # its name before edge_node.commands

#: Sparkplug datatype of a command value → the OPC UA Variant type it is written as
VARIANT_OF: dict[DataType, ua.VariantType] = {
    DataType.Int8: ua.VariantType.SByte, DataType.Int16: ua.VariantType.Int16,
    DataType.Int32: ua.VariantType.Int32, DataType.Int64: ua.VariantType.Int64,
    DataType.UInt8: ua.VariantType.Byte, DataType.UInt16: ua.VariantType.UInt16,
    DataType.UInt32: ua.VariantType.UInt32, DataType.UInt64: ua.VariantType.UInt64,
    DataType.Float: ua.VariantType.Float, DataType.Double: ua.VariantType.Double,
    DataType.Boolean: ua.VariantType.Boolean, DataType.String: ua.VariantType.String,
    DataType.Text: ua.VariantType.String, DataType.DateTime: ua.VariantType.DateTime,
}
BAD_NODE_ID_UNKNOWN = 0x80340000
BAD_NOT_CONNECTED = 0x808A0000
BAD_COMMUNICATION_ERROR = 0x80050000
#: BadNoMatch: the node has no member of that name
BAD_NO_MATCH = 0x806F0000


class WriterDisconnectedError(EdgeError, ConnectionError):
    """The write session is not up, or died during the call."""


@dataclass(frozen=True, slots=True)
class ReadResult:
    """One Value attribute read: JSON-able value, StatusCode and SourceTimestamp (ms)."""

    value: Any
    status_code: int
    source_ts_ms: int | None

    @property
    def good(self) -> bool:
        return self.status_code >> 30 == 0


def to_variant(datatype: DataType, value: Any) -> ua.Variant:
    """A command value as the Variant the server expects (DateTime commands carry ms UTC)."""
    vtype = VARIANT_OF.get(datatype)
    if vtype is None:
        raise ValueError(f"{datatype.name} cannot be written by a command")
    if vtype is ua.VariantType.DateTime:
        value = datetime.fromtimestamp(value / 1000.0, tz=UTC)
    elif vtype in (ua.VariantType.Float, ua.VariantType.Double):
        value = float(value)
    return ua.Variant(value, vtype)


def to_json_value(value: Any) -> Any:
    """A read value in the shape results and audit records carry (JSON; DateTime as ms UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def _field(structure: Any, path: str) -> tuple[bool, Any]:
    """(found, value) of a nested field of a decoded structure (asyncua cleans field names)."""
    item = structure
    for part in path.split("/"):
        name = clean_name(part)
        if item is None or not hasattr(item, name):
            return False, None
        item = getattr(item, name)
    return True, item


def _ms(ts: datetime | None) -> int | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1000)


def service_fault_code(exc: ua.UaStatusCodeError) -> int:
    """The StatusCode of a service fault: the server answered and refused the whole request.

    Servers that check user rights per service (the uns simulator's read-only users, many PLCs)
    refuse a Write or Call from a user without the right this way instead of per node; nothing was
    written, and the code belongs in the command result like a per-node Bad status.
    """
    return int(exc.code)


class OpcUaWriter:
    """``await run()`` until cancelled; :meth:`read` / :meth:`write` / :meth:`call` while connected."""

    def __init__(self, endpoint: OpcUaEndpointConfig, data_dir: Path) -> None:
        self.endpoint = endpoint
        self.data_dir = data_dir
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.disconnected.set()
        self.backoff = Backoff(endpoint.reconnect_min_s, endpoint.reconnect_max_s)
        self.connects = 0
        self.last_error = ""
        # its own OPC UA user when the endpoint has write_credentials (the read account otherwise)
        self.connection = OpcUaConnection(endpoint, data_dir, label=f"command session to {endpoint.url}",
                                          session=self._session, on_error=self._failed, on_closed=self._set_down,
                                          credentials=endpoint.writer_credentials(), backoff=self.backoff)
        self._namespaces: list[str] = []
        self._node_cache: dict[str, ua.NodeId] = {}
        #: node -> whether it is an object (members are variables) rather than a structured variable
        self._is_object: dict[ua.NodeId, bool] = {}
        self._types_loaded = False

    # -- supervisor (the loop itself: edge_node.opcua.connection) ----------------------------

    async def run(self) -> None:
        await self.connection.run()

    def _failed(self, exc: Exception) -> None:  # a peer or the network: log; the supervisor backs off
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("command session to %s lost or refused: %s", self.endpoint.url, self.last_error)

    async def _session(self, client: Client) -> None:
        self._namespaces = list(await client.get_namespace_array())
        self._node_cache = {}
        self._is_object = {}
        self._types_loaded = False
        self.connects += 1
        self.backoff.reset()
        self.disconnected.clear()
        self.connected.set()
        log.info("command session to %s up", self.endpoint.url)
        await watch_server_state(client, self.endpoint)

    def _set_down(self) -> None:
        self.connected.clear()
        self.disconnected.set()

    # -- node ids -----------------------------------------------------------------------------

    def node_id(self, text: str) -> ua.NodeId | None:
        """Parse ``ns=..;s=..`` / ``nsu=<uri>;s=..``; None if the namespace URI is not on this server."""
        cached = self._node_cache.get(text)
        if cached is not None:
            return cached
        parsed = ua.NodeId.from_string(text)
        uri = getattr(parsed, "NamespaceUri", None)
        if uri:
            if uri not in self._namespaces:
                return None
            parsed = ua.NodeId(parsed.Identifier, self._namespaces.index(uri), parsed.NodeIdType)
        elif isinstance(parsed, ua.ExpandedNodeId):
            parsed = ua.NodeId(parsed.Identifier, parsed.NamespaceIndex, parsed.NodeIdType)
        self._node_cache[text] = parsed
        return parsed

    # -- services -----------------------------------------------------------------------------

    def _require(self) -> Client:
        client = self.connection.client
        if client is None or not self.connected.is_set():
            raise WriterDisconnectedError(f"no command session to {self.endpoint.url}")
        return client

    async def _guarded(self, call: Any) -> Any:
        """Await a service call; a timeout or a transport error means the session is gone."""
        try:
            return await asyncio.wait_for(call, timeout=self.endpoint.timeout_s)
        except (TimeoutError, ConnectionError, OSError, ua.UaError) as exc:
            if isinstance(exc, ua.UaStatusCodeError):
                raise
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._set_down()
            raise WriterDisconnectedError(f"command session to {self.endpoint.url} failed: {self.last_error}") from None

    async def read(self, node_text: str) -> ReadResult:
        return (await self.read_many([node_text]))[0]

    async def read_many(self, node_texts: list[str]) -> list[ReadResult]:
        """Several Value attributes in one Read service call (one round trip to a busy server)."""
        return await self._read_nodes([self.node_id(text) for text in node_texts])

    async def read_path(self, object_text: str, path: Sequence[str]) -> ReadResult:
        """The Value of the variable at a browse path (namespace 0 names) below an object, e.g. a
        condition's ``AckedState/Id``: a condition's NodeId is known from its events, its state
        variables' NodeIds are not. The path is translated once per session."""
        client = self._require()
        key = f"{object_text}#{'/'.join(path)}"
        node = self._node_cache.get(key)
        if node is None:
            start = self.node_id(object_text)
            if start is None:
                return ReadResult(None, BAD_NODE_ID_UNKNOWN, None)
            browse = ua.BrowsePath()
            browse.StartingNode = start
            browse.RelativePath = ua.RelativePath(Elements=[ua.RelativePathElement(
                ReferenceTypeId=ua.NodeId(ua.ObjectIds.HierarchicalReferences), IsInverse=False, IncludeSubtypes=True,
                TargetName=ua.QualifiedName(name, 0)) for name in path])
            try:
                [found] = await self._guarded(client.uaclient.translate_browsepaths_to_nodeids([browse]))
            except ua.UaStatusCodeError as exc:
                return ReadResult(None, service_fault_code(exc), None)
            if not found.StatusCode.is_good() or not found.Targets:
                return ReadResult(None, int(found.StatusCode.value), None)
            target = found.Targets[0].TargetId
            node = self._node_cache[key] = ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType)
        return (await self._read_nodes([node]))[0]

    async def _read_nodes(self, nodes: list[ua.NodeId | None]) -> list[ReadResult]:
        client = self._require()
        params = ua.ReadParameters()
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        for node in nodes:
            if node is not None:
                rv = ua.ReadValueId()
                rv.NodeId = node
                rv.AttributeId = ua.AttributeIds.Value
                params.NodesToRead.append(rv)
        try:
            answers = iter(await self._guarded(client.uaclient.read(params)) if params.NodesToRead else [])
        except ua.UaStatusCodeError as exc:  # the server refused the whole Read (a service fault)
            return [ReadResult(None, service_fault_code(exc), None) for _ in nodes]
        out: list[ReadResult] = []
        for node in nodes:
            if node is None:
                out.append(ReadResult(None, BAD_NODE_ID_UNKNOWN, None))
                continue
            dv = next(answers)
            status = dv.StatusCode.value if dv.StatusCode is not None else 0
            value = dv.Value.Value if dv.Value is not None else None
            out.append(ReadResult(to_json_value(value), status, _ms(dv.SourceTimestamp)))
        return out

    async def write(self, node_text: str, variant: ua.Variant) -> int:
        """Write the Value attribute (no timestamps: many servers refuse client-set ones)."""
        self._require()
        node = self.node_id(node_text)
        if node is None:
            return BAD_NODE_ID_UNKNOWN
        return await self._write_node(node, variant)

    # -- members of template instances ---------------------------------------------------------

    async def read_member(self, node_text: str, path: str) -> ReadResult:
        """The value of one member (``a/b`` nested) of an object instance or a structured variable."""
        self._require()
        node = self.node_id(node_text)
        if node is None:
            return ReadResult(None, BAD_NODE_ID_UNKNOWN, None)
        if await self._object(node):
            member = await self._member_variable(node, path)
            return (await self._read_nodes([member]))[0] if member is not None else ReadResult(None, BAD_NO_MATCH, None)
        dv, structure = await self._read_structure(node)
        status = dv.StatusCode.value if dv.StatusCode is not None else 0
        if status & 0x80000000:
            return ReadResult(None, status, _ms(dv.SourceTimestamp))
        found, value = _field(structure, path)
        if not found:
            return ReadResult(None, BAD_NO_MATCH, None)
        return ReadResult(to_json_value(value), status, _ms(dv.SourceTimestamp))

    async def write_member(self, node_text: str, path: str, datatype: DataType, value: Any) -> int:
        """Write one member; a structured variable is read, changed in that field, written whole."""
        self._require()
        node = self.node_id(node_text)
        if node is None:
            return BAD_NODE_ID_UNKNOWN
        variant = to_variant(datatype, value)
        if await self._object(node):
            member = await self._member_variable(node, path)
            return await self._write_node(member, variant) if member is not None else BAD_NO_MATCH
        dv, structure = await self._read_structure(node)
        status = dv.StatusCode.value if dv.StatusCode is not None else 0
        if status & 0x80000000 or structure is None:
            return status or BAD_NO_MATCH
        *outer, last = path.split("/")
        holder = structure
        for part in outer:
            holder = getattr(holder, clean_name(part), None)
        if holder is None or not hasattr(holder, clean_name(last)):
            return BAD_NO_MATCH
        setattr(holder, clean_name(last), variant.Value)
        return await self._write_node(node, ua.Variant(structure, ua.VariantType.ExtensionObject))

    async def _object(self, node: ua.NodeId) -> bool:
        known = self._is_object.get(node)
        if known is None:
            client = self._require()
            try:
                node_class = await self._guarded(client.get_node(node).read_node_class())
            except ua.UaStatusCodeError:
                node_class = ua.NodeClass.Variable  # its Read then says what is wrong with the node
            known = self._is_object[node] = node_class == ua.NodeClass.Object
        return known

    async def _member_variable(self, node: ua.NodeId, path: str) -> ua.NodeId | None:
        """The member variable at ``path`` below an object, by browse name (any namespace); cached."""
        key = f"{node.to_string()}#member#{path}"
        found: ua.NodeId | None = self._node_cache.get(key)
        if found is None:
            client = self._require()
            found = node
            for part in path.split("/"):
                children = await self._guarded(client.get_node(found).get_children(refs=ua.ObjectIds.HasComponent))
                names = [await self._guarded(child.read_browse_name()) for child in children]
                match = next((c.nodeid for c, n in zip(children, names, strict=True) if n.Name == part), None)
                if match is None:
                    return None
                found = match
            self._node_cache[key] = found
        return found

    async def _read_structure(self, node: ua.NodeId) -> tuple[ua.DataValue, Any]:
        """A structured variable's DataValue and its decoded value (the structure classes are
        generated from the server's DataTypeDefinitions once per session)."""
        client = self._require()
        if not self._types_loaded:
            await self._guarded(client.load_data_type_definitions())
            self._types_loaded = True
        dv = await self._guarded(client.get_node(node).read_data_value(raise_on_bad_status=False))
        return dv, dv.Value.Value if dv.Value is not None else None

    async def _write_node(self, node: ua.NodeId, variant: ua.Variant) -> int:
        client = self._require()
        try:
            codes = await self._guarded(client.uaclient.write_attributes([node], [ua.DataValue(Value=variant)],
                                                                         ua.AttributeIds.Value))
        except ua.UaStatusCodeError as exc:  # e.g. BadUserAccessDenied for the whole Write service
            return service_fault_code(exc)
        return int(codes[0].value)

    async def call(self, object_text: str, method_text: str, args: list[ua.Variant]) -> int:
        """Call a method in one Call service request (atomic on the server)."""
        client = self._require()
        obj, method = self.node_id(object_text), self.node_id(method_text)
        if obj is None or method is None:
            return BAD_NODE_ID_UNKNOWN
        request = ua.CallMethodRequest()
        request.ObjectId = obj
        request.MethodId = method
        request.InputArguments = args
        try:
            results = await self._guarded(client.uaclient.call([request]))
        except ua.UaStatusCodeError as exc:
            return service_fault_code(exc)
        return int(results[0].StatusCode.value)


__all__ = ["BAD_NO_MATCH", "VARIANT_OF", "OpcUaWriter", "ReadResult", "WriterDisconnectedError", "service_fault_code",
           "to_json_value", "to_variant"]
