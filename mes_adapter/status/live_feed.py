"""Fan-out of live events to dashboard clients (Server-Sent Events), with per-client bounds.

Producers (the tag pump, batch context, commands, confirmations) call :meth:`LiveFeed.publish`
with a JSON-ready dict; each connected client has its own bounded queue, and a slow client loses
its oldest events (counted) instead of slowing the adapter or other clients. Tag updates are
conflated upstream (:class:`TagPump`) so a fast tag costs a client a few events per second at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from mes_adapter.episodes.detector import status_name
from mes_adapter.host import ChangeStream, DeviceChange, LiveModel, MetricChange, MetricState, NodeChange

log = logging.getLogger("uns.adapter.feed")

Event = dict[str, Any]


class FeedClient:
    def __init__(self, feed: LiveFeed, maxsize: int) -> None:
        self._feed = feed
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, event: Event) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.dropped += 1
            self._feed.dropped += 1
        self.queue.put_nowait(event)

    def close(self) -> None:
        self._feed._clients.discard(self)


class LiveFeed:
    def __init__(self, client_queue: int = 1000) -> None:
        self._clients: set[FeedClient] = set()
        self._client_queue = client_queue
        self.published = 0
        self.dropped = 0
        #: set when the server is shutting down: every SSE stream ends so uvicorn can stop promptly
        self.closing = asyncio.Event()

    def close(self) -> None:
        self.closing.set()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def subscribe(self) -> FeedClient:
        client = FeedClient(self, self._client_queue)
        self._clients.add(client)
        return client

    def publish(self, event: Event) -> None:
        self.published += 1
        for client in list(self._clients):
            client.offer(event)


def tag_event(state: MetricState, topic: str | None) -> Event:
    """The JSON a dashboard gets for one tag."""
    return {**state.to_dict(), "group_id": state.group_id, "edge_node_id": state.edge_node_id,
            "device_id": state.device_id, "topic": topic, "status": status_name(state.status_code)}


class TagPump:
    """Reads the host's change stream, conflates tag changes per ``interval_s``, feeds the :class:`LiveFeed`."""

    def __init__(self, model: LiveModel, feed: LiveFeed, topic_of: Callable[[MetricState], str | None],
                 interval_s: float = 0.25) -> None:
        self._model = model
        self._feed = feed
        self._topic_of = topic_of
        self._interval_s = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        stream = self._model.subscribe()
        try:
            while not stop.is_set():
                await self._drain(stream, stop)
        finally:
            stream.close()

    async def _drain(self, stream: ChangeStream, stop: asyncio.Event) -> None:
        getter = asyncio.ensure_future(stream.get())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not getter.done():
                getter.cancel()
        if getter not in done or getter.exception() is not None:
            return
        changes = [getter.result()]
        await asyncio.sleep(self._interval_s)
        while (change := stream.get_nowait()) is not None:
            changes.append(change)
        tags: dict[tuple[str, str, str | None, str], MetricState] = {}
        for change in changes:
            if isinstance(change, MetricChange):
                if not change.historical:
                    m = change.metric
                    tags[(m.group_id, m.edge_node_id, m.device_id, m.name)] = m
            elif isinstance(change, NodeChange):
                self._feed.publish({"type": "node", "group_id": change.group_id, "edge_node_id": change.edge_node_id,
                                    "online": change.online, "at_ms": change.at_ms, "reason": change.reason})
            elif isinstance(change, DeviceChange):
                self._feed.publish({"type": "device", "group_id": change.group_id,
                                    "edge_node_id": change.edge_node_id, "device_id": change.device_id,
                                    "online": change.online, "at_ms": change.at_ms, "reason": change.reason})
        if tags:
            self._feed.publish({"type": "tags", "tags": [tag_event(s, self._topic_of(s)) for s in tags.values()]})


async def sse_stream(client: FeedClient, stop: asyncio.Event, first: list[Event],
                     keepalive_s: float = 15.0) -> AsyncIterator[bytes]:
    """``text/event-stream`` frames for one client until ``stop`` (adapter shutdown) or disconnect."""
    import json

    try:
        for event in first:
            yield _frame(json.dumps(event, default=str), event.get("type", "message"))
        while not stop.is_set():
            getter = asyncio.ensure_future(client.queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                done, _ = await asyncio.wait({getter, stopper}, timeout=keepalive_s,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                if not getter.done():
                    getter.cancel()
            if getter in done:
                event = getter.result()
                yield _frame(json.dumps(event, default=str), event.get("type", "message"))
            elif not stop.is_set():
                yield b": keepalive\n\n"
    finally:
        client.close()


def _frame(data: str, event: str) -> bytes:
    return f"event: {event}\ndata: {data}\n\n".encode()
