"""A tiny Sparkplug edge node for adapter tests: NBIRTH/DBIRTH/NDATA/DDATA over paho, built with uns.sparkplug."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from uns.conventions import BDSEQ, NODE_REBIRTH, PROP_ENG_UNIT
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, Payload, PropertyValue, now_ms
from uns.sparkplug.topic import MessageType, node_topic

GROUP = "acme:plant1"
EDGE = "packaging:line1"
CELL = "filler"
LINE = "acme/plant1/packaging/line1"

NODE_METRICS: dict[str, tuple[int, DataType, Any]] = {
    "GoodCount": (1, DataType.UInt64, 100),
    "RejectCount": (2, DataType.UInt64, 5),
    "State": (3, DataType.String, "Execute"),
}
DEVICE_METRICS: dict[str, tuple[int, DataType, Any, str | None]] = {
    "Speed": (10, DataType.Double, 120.5, "m/min"),
    "Temperature": (11, DataType.Float, 21.5, "degC"),
    "SpeedSetpoint": (12, DataType.Double, 120.0, "m/min"),
    "Recipe": (13, DataType.String, "SKU-12", None),
}


class Edge:
    """Publishes a hand-made Sparkplug session and records the commands it receives."""

    def __init__(self, host: str, port: int) -> None:
        self.seq = 0
        self.bd_seq = 0
        self.commands: list[tuple[str, bytes]] = []
        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.commands.append((m.topic, bytes(m.payload)))
        self.host, self.port = host, port

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe([(node_topic(GROUP, MessageType.NCMD, EDGE), 0),
                          (node_topic(GROUP, MessageType.DCMD, EDGE, CELL), 0)])
        self._connected.set()

    def __enter__(self) -> Edge:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("edge did not connect")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=0).wait_for_publish(5)

    def _next(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def birth(self, ts: int | None = None) -> None:
        ts = ts or now_ms()
        self.seq = 0
        metrics = [Metric(name=BDSEQ, value=self.bd_seq, datatype=DataType.Int64, timestamp=ts),
                   Metric(name=NODE_REBIRTH, value=False, datatype=DataType.Boolean, timestamp=ts)]
        metrics += [Metric(name=n, alias=a, datatype=d, value=v, timestamp=ts) for n, (a, d, v) in NODE_METRICS.items()]
        self._send(node_topic(GROUP, MessageType.NBIRTH, EDGE),
                   encode_payload(Payload(metrics, timestamp=ts, seq=0), MessageType.NBIRTH))
        device = []
        for name, (alias, datatype, value, unit) in DEVICE_METRICS.items():
            props = {PROP_ENG_UNIT: PropertyValue(DataType.String, unit)} if unit else None
            device.append(Metric(name=name, alias=alias, datatype=datatype, value=value, timestamp=ts,
                                 properties=props))
        self._send(node_topic(GROUP, MessageType.DBIRTH, EDGE, CELL),
                   encode_payload(Payload(device, timestamp=ts, seq=self._next()), MessageType.DBIRTH))

    def ddata(self, values: dict[str, Any], ts: int | None = None) -> None:
        ts = ts or now_ms()
        metrics = [Metric(alias=DEVICE_METRICS[n][0], datatype=DEVICE_METRICS[n][1], value=v, timestamp=ts)
                   for n, v in values.items()]
        self._send(node_topic(GROUP, MessageType.DDATA, EDGE, CELL),
                   encode_payload(Payload(metrics, timestamp=ts, seq=self._next()), MessageType.DDATA))

    def ndata(self, values: dict[str, Any], ts: int | None = None) -> None:
        ts = ts or now_ms()
        metrics = [Metric(alias=NODE_METRICS[n][0], datatype=NODE_METRICS[n][1], value=v, timestamp=ts)
                   for n, v in values.items()]
        self._send(node_topic(GROUP, MessageType.NDATA, EDGE),
                   encode_payload(Payload(metrics, timestamp=ts, seq=self._next()), MessageType.NDATA))

    def skip_seq(self) -> None:
        self.seq = (self.seq + 3) % 256
