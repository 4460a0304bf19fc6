"""The amqtt internals the hot path (broker/outbox.py, issue 20) relies on, checked so that an
amqtt upgrade that changes them fails here instead of silently bypassing or breaking delivery.

Pinned: amqtt 0.12.1. Each check names the override or assumption it protects.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import queue
import re

import paho.mqtt.client as paho
import pytest
from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.mqtt import packet as amqtt_packet
from amqtt.mqtt.protocol.handler import ProtocolHandler
from amqtt.mqtt.publish import PublishPacket
from amqtt.session import ApplicationMessage, IncomingApplicationMessage, Session

from broker.amqtt_ext import _HANDLED, KeepAliveBrokerHandler, UnsBroker
from broker.config import BrokerSettings
from broker.outbox import QOS1_WINDOW, CoalescingWriter, EncodedPublish, Outbox
from broker.server import EmbeddedBroker
from tests.support.net import free_port


def params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_amqtt_is_the_version_the_overrides_match() -> None:
    assert importlib.metadata.version("amqtt") == "0.12.1"


def test_the_overridden_amqtt_methods_keep_their_signatures() -> None:
    # UnsBroker._handle_message_delivery routes queued messages behind the awaited one
    assert params(Broker._handle_message_delivery) == ["self", "client_session", "handler", "wait_deliver"]
    # UnsBroker._handle_disconnect closes the outbox before amqtt's and finds the handler as args[0]
    assert params(Broker._handle_disconnect) == ["self", "client_session", "handler", "disconnect_waiter"]
    # UnsBroker._client_connected wraps the writer in CoalescingWriter
    assert params(Broker._client_connected) == ["self", "listener_name", "reader", "writer"]
    assert params(Broker._retain_broadcast_message) == ["self", "broadcast", "qos", "target_session"]
    assert params(Broker._get_handler) == ["self", "session"]
    # KeepAliveBrokerHandler.handle_puback frees the outbox window; amqtt's reader dispatches to it
    assert params(ProtocolHandler.handle_puback) == ["self", "puback"]
    assert "self.handle_puback(packet)" in inspect.getsource(ProtocolHandler._reader_loop)
    # each packet amqtt sends is one write() followed by drain() (CoalescingWriter keeps it whole)
    assert "writer.write(self.to_bytes())" in inspect.getsource(PublishPacket.to_stream)


def test_amqtt_s_reader_loop_reads_the_keep_alive_once_before_its_first_await() -> None:
    """KeepAliveBrokerHandler._reader_loop shows amqtt's loop keep_alive 0 for one loop turn."""
    source = inspect.getsource(ProtocolHandler._reader_loop)
    read_at = source.index("keepalive_timeout: int | None = self.session.keep_alive")
    assert "await" not in source[:read_at]
    assert "asyncio.wait_for(MQTTFixedHeader.from_stream(self.reader), timeout=keepalive_timeout)" in source
    assert "self.handle_read_timeout()" in source


async def test_amqtt_s_client_loop_waits_on_the_delivery_queue_the_handler_puts_back() -> None:
    """KeepAliveBrokerHandler.mqtt_deliver_next_message takes a message with amqtt's get() and
    puts it back at the head of the queue's deque; the broker then routes from the queue."""
    assert "handler.mqtt_deliver_next_message()" in inspect.getsource(Broker._client_message_loop)
    assert "self.session.delivered_message_queue.get()" in inspect.getsource(
        ProtocolHandler.mqtt_deliver_next_message)
    q: asyncio.Queue[int] = asyncio.Queue()
    q.put_nowait(1)
    q.put_nowait(2)
    first = await q.get()
    q._queue.appendleft(first)  # noqa: SLF001
    assert [q.get_nowait(), q.get_nowait()] == [1, 2]


def test_the_session_state_the_outbox_shares_with_amqtt_is_there() -> None:
    session = Session()
    assert isinstance(session.inflight_out, dict)
    assert isinstance(session.next_packet_id, int)  # a property that skips ids in flight
    assert "publish_packet" in ApplicationMessage.__slots__
    # amqtt's redelivery on reconnect resends inflight_out, with DUP when publish_packet is set
    assert "inflight_out" in inspect.getsource(ProtocolHandler._retry_deliveries)
    assert "build_publish_packet(dup=True)" in inspect.getsource(ProtocolHandler._handle_qos1_message_flow)
    # CoalescingWriter reaches the transport through the adapter's StreamWriter
    assert "self._writer = writer" in inspect.getsource(StreamWriterAdapter.__init__)
    assert "_write_lock" in inspect.getsource(ProtocolHandler.__init__)


def test_our_reader_loop_does_what_amqtt_s_reader_loop_does() -> None:
    """KeepAliveBrokerHandler._read_packets replaces amqtt's _reader_loop on TCP/TLS: the same
    handler method per packet type, the same end, and PUBLISH QoS 0/1 queued as amqtt's flows do."""
    loop_source = inspect.getsource(ProtocolHandler._reader_loop)
    dispatched = set(re.findall(r"self\.(handle_\w+)\(packet\)", loop_source))
    assert dispatched == set(_HANDLED.values())
    for packet_type, name in _HANDLED.items():  # each type goes to the method we call for it
        assert re.search(rf"== {packet_name(packet_type)} and isinstance\(packet, \w+\):\s+(?:#[^\n]*\s+)*"
                         rf"(?:task = asyncio.create_task\(|await )self\.{name}\(packet\)", loop_source), name
    tail = loop_source[loop_source.index("while running_tasks:"):]
    assert [line.strip() for line in tail.splitlines() if "await" in line or "set()" in line] == [
        "await self.handle_connection_closed()", "self._reader_stopped.set()", "await self.stop()"]
    # a PUBLISH becomes an IncomingApplicationMessage with the packet's retain flag...
    publish_source = inspect.getsource(ProtocolHandler.handle_publish)
    assert "publish_packet.retain_flag," in publish_source and "IncomingApplicationMessage(" in publish_source
    assert params(IncomingApplicationMessage) == ["packet_id", "topic", "qos", "data", "retain"]
    # ... QoS 0 is queued unless DUP is set (MQTT-3.3.1-2); QoS 1 is queued, then acknowledged
    qos0 = inspect.getsource(ProtocolHandler._handle_qos0_message_flow)
    assert "dup_flag" in qos0 and "delivered_message_queue.put_nowait(app_message)" in qos0
    qos1 = inspect.getsource(ProtocolHandler._handle_qos1_message_flow)
    assert qos1.index("delivered_message_queue.put(app_message)") < qos1.index("PubackPacket.build(")
    # our reader reads the StreamReader under amqtt's adapter; the reader task is amqtt's
    stream = object()
    assert StreamReaderAdapter(stream)._reader is stream  # type: ignore[arg-type]  # noqa: SLF001
    assert "self._reader_task = asyncio.create_task(self._reader_loop())" in inspect.getsource(ProtocolHandler.start)


def packet_name(packet_type: int) -> str:
    return next(name for name in ("CONNACK", "SUBSCRIBE", "UNSUBSCRIBE", "SUBACK", "UNSUBACK", "PUBACK", "PUBREC",
                                  "PUBREL", "PUBCOMP", "PINGREQ", "PINGRESP", "PUBLISH", "DISCONNECT", "CONNECT")
                if getattr(amqtt_packet, name) == packet_type)


@pytest.mark.parametrize("size", [0, 1, 100, 127 - 12, 200, 16_383, 16_384 + 5, 70_000])
@pytest.mark.parametrize("retain", [False, True])
def test_encoded_publish_is_byte_for_byte_amqtt_s_encoding(size: int, retain: bool) -> None:
    payload = bytes(i % 251 for i in range(size))
    message = EncodedPublish("plant/ä/line-1", payload, retain=retain)
    assert message.qos0() == bytes(PublishPacket.build("plant/ä/line-1", payload, None, False, 0, retain).to_bytes())
    for packet_id, dup in ((1, False), (258, True), (65_535, False)):
        expected = PublishPacket.build("plant/ä/line-1", payload, packet_id, dup, 1, retain).to_bytes()
        assert message.qos1(packet_id, dup) == bytes(expected)


async def test_the_patched_path_is_the_one_running() -> None:
    """In process: a QoS 0 and a QoS 1 burst reach a paho subscriber through KeepAliveBrokerHandler,
    its Outbox and its CoalescingWriter, and the QoS 1 window is empty once all are acknowledged."""
    port = free_port()
    settings = BrokerSettings.model_validate({"tcp": {"host": "127.0.0.1", "port": port}, "websocket": None,
                                              "demo_anonymous": "read-write", "sys_interval": 0, "http": None})
    count = QOS1_WINDOW + 500
    async with EmbeddedBroker(settings) as embedded:
        got: queue.Queue[tuple[int, bytes]] = queue.Queue()
        sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="guard-sub")
        sub.on_message = lambda c, u, m: got.put((m.qos, m.payload))
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="guard-pub")
        for client in (sub, pub):
            await asyncio.to_thread(client.connect, "127.0.0.1", port)
            client.loop_start()
        try:
            subscribed = asyncio.Event()
            loop = asyncio.get_running_loop()
            sub.on_subscribe = lambda *a: loop.call_soon_threadsafe(subscribed.set)
            sub.subscribe([("guard/0", 0), ("guard/1", 1)])
            await asyncio.wait_for(subscribed.wait(), 10)
            for qos in (0, 1):
                for i in range(count):
                    pub.publish(f"guard/{qos}", str(i).encode(), qos=qos)
            received = [await asyncio.to_thread(got.get, True, 30) for _ in range(2 * count)]
            assert [p for q, p in received if q == 0] == [str(i).encode() for i in range(count)]
            assert [p for q, p in received if q == 1] == [str(i).encode() for i in range(count)]
            broker: UnsBroker = embedded.broker
            session, handler = broker._sessions["guard-sub"]  # noqa: SLF001
            assert isinstance(handler, KeepAliveBrokerHandler)
            assert isinstance(handler.uns_outbox, Outbox)
            assert isinstance(handler.writer, CoalescingWriter)
            assert handler.writer.writes >= 2 * count  # every PUBLISH went through it
            for _ in range(100):  # the last PUBACKs may still be on their way
                if not handler.uns_outbox.inflight:
                    break
                await asyncio.sleep(0.05)
            assert handler.uns_outbox.inflight == {}
            assert session.inflight_out == {}
            assert not handler.uns_outbox.pending
            # the keep-alive (paho's 60 s, x 1.5) is back on the session and watched by the timer
            assert session.keep_alive == 90
            assert handler._idle_timer is not None  # noqa: SLF001
            # both connections read through our reader loop, not amqtt's
            for client_id in ("guard-sub", "guard-pub"):
                reading = broker._sessions[client_id][1]._reader_task.get_coro()  # noqa: SLF001
                assert reading.cr_code.co_name == "_reader_loop" and reading.cr_await.cr_code.co_name == "_read_packets"
        finally:
            for client in (sub, pub):
                client.disconnect()
                client.loop_stop()
