"""A hand-rolled Sparkplug edge node for host tests, built on uns.sparkplug's codec.

:class:`EdgeScript` only makes ``(topic, bytes)`` pairs (it keeps seq and bdSeq) so the same
traffic can go through the pure tracker or, via :class:`PahoEdge`, through a real broker. It can
also misbehave on purpose: skip a seq, send an alias no birth declared, forget its NBIRTH.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from uns.conventions import BDSEQ, NODE_REBIRTH, PROP_ENG_UNIT
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import MetaData, Metric, Payload, PropertyValue, now_ms
from uns.sparkplug.topic import MessageType, certificate_topic, node_topic, parse_node_topic

GROUP = "acme:plant1"
EDGE = "packaging:line1"
CELL = "filler"

#: (name, alias, datatype, birth value) of the node and of the device
NODE_METRICS: list[tuple[str, int, DataType, Any]] = [
    ("Line/State", 1, DataType.String, "RUNNING"),
    ("Line/GoodCount", 2, DataType.UInt64, 1000),
]
DEVICE_METRICS: list[tuple[str, int, DataType, Any]] = [
    ("Speed", 10, DataType.Double, 120.5),
    ("Temperature", 11, DataType.Float, 21.5),
    ("Offset", 12, DataType.Int8, -5),
    ("Running", 13, DataType.Boolean, True),
    ("Recipe", 14, DataType.String, "SKU-12"),
    ("Counts", 15, DataType.Int32Array, [1, -2, 3]),
]


@dataclass
class EdgeScript:
    group: str = GROUP
    edge: str = EDGE
    device: str = CELL
    bd_seq: int = 0
    seq: int = 0
    node_metrics: list[tuple[str, int, DataType, Any]] = field(default_factory=lambda: list(NODE_METRICS))
    device_metrics: list[tuple[str, int, DataType, Any]] = field(default_factory=lambda: list(DEVICE_METRICS))

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def topic(self, kind: MessageType, device: str | None = None) -> str:
        return node_topic(self.group, kind, self.edge, device)

    def nbirth(self) -> tuple[str, bytes]:
        ts = now_ms()
        self.seq = 0
        metrics = [Metric(name=BDSEQ, value=self.bd_seq, datatype=DataType.Int64, timestamp=ts),
                   Metric(name=NODE_REBIRTH, value=False, datatype=DataType.Boolean, timestamp=ts)]
        metrics += [Metric(name=n, alias=a, datatype=d, value=v, timestamp=ts) for n, a, d, v in self.node_metrics]
        return self.topic(MessageType.NBIRTH), encode_payload(Payload(metrics, timestamp=ts, seq=0), MessageType.NBIRTH)

    def dbirth(self) -> tuple[str, bytes]:
        ts = now_ms()
        metrics = []
        for n, a, d, v in self.device_metrics:
            props = {PROP_ENG_UNIT: PropertyValue(DataType.String, "m/min")} if n == "Speed" else None
            meta = MetaData(description="line speed") if n == "Speed" else None
            metrics.append(Metric(name=n, alias=a, datatype=d, value=v, timestamp=ts, properties=props, metadata=meta))
        payload = Payload(metrics, timestamp=ts, seq=self._next_seq())
        return self.topic(MessageType.DBIRTH, self.device), encode_payload(payload, MessageType.DBIRTH)

    def ddata(self, values: dict[str, Any], *, historical: bool = False, ts: int | None = None,
              alias_override: int | None = None) -> tuple[str, bytes]:
        ts = ts or now_ms()
        table = {n: (a, d) for n, a, d, _ in self.device_metrics}
        metrics = []
        for name, value in values.items():
            alias, datatype = table.get(name, (alias_override, DataType.Int32))
            metrics.append(Metric(alias=alias_override if alias_override is not None else alias, datatype=datatype,
                                  value=value, timestamp=ts, is_historical=historical))
        payload = Payload(metrics, timestamp=ts, seq=self._next_seq())
        return self.topic(MessageType.DDATA, self.device), encode_payload(payload, MessageType.DDATA)

    def ndata(self, values: dict[str, Any]) -> tuple[str, bytes]:
        return self.ndata_at(values, ts=now_ms())

    def ndata_at(self, values: dict[str, Any], *, ts: int) -> tuple[str, bytes]:
        """NDATA whose metrics carry ``ts`` (a source timestamp that may be older than the birth)."""
        table = {n: (a, d) for n, a, d, _ in self.node_metrics}
        metrics = [Metric(alias=table[n][0], datatype=table[n][1], value=v, timestamp=ts) for n, v in values.items()]
        return self.topic(MessageType.NDATA), encode_payload(Payload(metrics, timestamp=now_ms(), seq=self._next_seq()),
                                                             MessageType.NDATA)

    def ddeath(self) -> tuple[str, bytes]:
        payload = Payload([], timestamp=now_ms(), seq=self._next_seq())
        return self.topic(MessageType.DDEATH, self.device), encode_payload(payload, MessageType.DDEATH)

    def ndeath(self, bd_seq: int | None = None) -> tuple[str, bytes]:
        value = self.bd_seq if bd_seq is None else bd_seq
        payload = Payload([Metric(name=BDSEQ, value=value, datatype=DataType.Int64)], timestamp=now_ms())
        return self.topic(MessageType.NDEATH), encode_payload(payload, MessageType.NDEATH)

    def skip_seq(self, n: int = 1) -> None:
        self.seq = (self.seq + n) % 256

    def certificates(self) -> list[tuple[str, bytes]]:
        """What a Sparkplug-aware broker serves retained for the current births."""
        out = []
        for topic, data in (self.nbirth(), self.dbirth()):
            out.append((certificate_topic(parse_node_topic(topic)), data))
        return out


class PahoEdge:
    """Publishes an :class:`EdgeScript`'s messages to a broker (QoS 0, as edges do)."""

    def __init__(self, host: str, port: int, script: EdgeScript | None = None) -> None:
        self.script = script or EdgeScript()
        self.commands: list[tuple[str, bytes]] = []
        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, u, f, rc, p=None: (
            c.subscribe(self.script.topic(MessageType.NCMD), 1), self._connected.set())
        self.client.on_message = lambda c, u, m: self.commands.append((m.topic, bytes(m.payload)))
        self.host, self.port = host, port

    def start(self) -> PahoEdge:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("edge did not connect")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def send(self, message: tuple[str, bytes], *, qos: int = 0, retain: bool = False) -> None:
        info = self.client.publish(message[0], message[1], qos=qos, retain=retain)
        info.wait_for_publish(5)

    def __enter__(self) -> PahoEdge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
