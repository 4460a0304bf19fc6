"""The edge node process: OPC UA sources → validation → Sparkplug edge client, from one config.

Composition only: :class:`edge_node.opcua.source.OpcUaSource` (one per endpoint) feeds the
Sparkplug client (:class:`edge_node.mqtt_client.SparkplugEdgeClient`), which owns births,
deaths, sequence numbers and store-and-forward. The client is entered first so the NBIRTH (with
every metric definition) precedes the first DBIRTH a source announces, and left last so a
shutdown ends with NDEATH. With an ``http:`` section, :class:`edge_node.observability.EdgeObservability`
serves ``/metrics`` and the probes from before the client starts until after it stopped, so a
probe sees "starting" and "stopping" rather than a refused connection. The first NBIRTH waits
(``sparkplug.first_birth_wait_s``) until the endpoints with node-level tags were read once, so it
carries their values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from uns.aio import cancel_and_wait
from uns.sparkplug.datatypes import DataType

from .alarms import AlarmBook
from .alarms import definitions as alarm_definitions
from .commands.edge_client import EdgeClient
from .commands.wiring import CommandRuntime, command_definitions, start_commands
from .config import EdgeConfig, build_sparkplug_config
from .heap import trim_heap
from .model import MetricDefinition
from .opcua.source import OpcUaSource, SourceSink
from .quality_alarms import QualityAlarmBook, quality_tags
from .quality_alarms import definitions as quality_definitions
from .sparkplug_config import EdgeSparkplugConfig
from .validation import ValidationStats

if TYPE_CHECKING:
    from .observability import EdgeObservability
    from .session import EdgeSession

log = logging.getLogger(__name__)


class ClientStats(Protocol):
    """The client's counters (:class:`edge_node.mqtt_client.EdgeStats`), for ``/metrics`` and ``stats``."""

    def as_dict(self) -> dict[str, Any]: ...


class SparkplugClient(SourceSink, Protocol):
    """The client the app drives: entered first, fed by the sources, left last; its status and
    counters feed ``stats`` and :mod:`edge_node.observability` (``/readyz``, ``/metrics``).

    :class:`edge_node.mqtt_client.SparkplugEdgeClient` is one; it is also a :class:`FirstBirthGate`
    and an :class:`edge_node.commands.edge_client.EdgeClient`, which the app asks with ``isinstance``
    (a telemetry-only client, such as a test's recording sink, is neither: no gate, no commands).
    """

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> None: ...

    @property
    def stats(self) -> ClientStats: ...

    @property
    def connected(self) -> bool: ...

    @property
    def birthed(self) -> bool: ...

    @property
    def store_failing(self) -> str | None: ...

    @property
    def session(self) -> EdgeSession: ...


@runtime_checkable
class FirstBirthGate(Protocol):
    """A client whose first NBIRTH can wait for the node-level tags' first read."""

    def hold_first_birth(self, ready: asyncio.Event, timeout_s: float) -> None: ...


#: ``(sparkplug_config, definitions, data_dir) -> client``
ClientFactory = Callable[[EdgeSparkplugConfig, list[MetricDefinition], Path], SparkplugClient]


def metric_definitions(config: EdgeConfig) -> list[MetricDefinition]:
    """Every metric of the node and its devices, as declared in NBIRTH/DBIRTH."""
    tags = [
        MetricDefinition(device_id=config.device_id(tag), name=tag.metric, datatype=tag.datatype,
                         unit=tag.unit, eng_low=tag.eng_low, eng_high=tag.eng_high,
                         description=tag.description, writable=tag.writable)
        for tag in config.tags
    ]
    alarms = [d for ep in config.opcua if ep.alarms is not None
              for d in alarm_definitions(ep.alarms, config.device_of_cell)]
    return tags + alarms + quality_definitions(quality_tags(config))


def _default_client_factory(sparkplug: EdgeSparkplugConfig, definitions: list[MetricDefinition],
                            data_dir: Path) -> SparkplugClient:
    from edge_node.mqtt_client import SparkplugEdgeClient

    return SparkplugEdgeClient(sparkplug, definitions, data_dir)


async def _all_set(events: list[asyncio.Event], done: asyncio.Event) -> None:
    """Set ``done`` once every one of ``events`` is set (the first birth's gate)."""
    for event in events:
        await event.wait()
    done.set()


class EdgeNodeApp:
    """``await app.start()`` / ``await app.stop()``, or ``await app.run()`` until SIGINT/SIGTERM."""

    def __init__(self, config: EdgeConfig, *, client_factory: ClientFactory | None = None) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.sparkplug = build_sparkplug_config(config)
        self.definitions = metric_definitions(config)
        self.definitions += command_definitions(config, self.definitions)  # method-call rules as String metrics
        self.validation_stats = ValidationStats()
        self._client_factory = client_factory or _default_client_factory
        self.client: SparkplugClient | None = None
        self.sources: list[OpcUaSource] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_event = asyncio.Event()
        self.commands: CommandRuntime | None = None
        self.observability: EdgeObservability | None = None
        trim_heap()  # what validating the tag map left free (edge_node.heap)

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        http = self.config.http
        if http is not None and http.port is not None and self.observability is None:
            from .observability import EdgeObservability  # prometheus/uvicorn only when asked for

            observability = EdgeObservability(self, http)
            if await observability.start():
                self.observability = observability
        client = self._client_factory(self.sparkplug, self.definitions, self.data_dir)
        node_values_read = asyncio.Event()
        if self.sparkplug.first_birth_wait_s > 0 and isinstance(client, FirstBirthGate):
            client.hold_first_birth(node_values_read, self.sparkplug.first_birth_wait_s)
        await client.__aenter__()
        self.client = client
        books = {endpoint.name: AlarmBook(endpoint.alarms, self.config.device_of_cell)
                 for endpoint in self.config.opcua if endpoint.alarms is not None}

        def condition(device_id: str | None, name: str) -> tuple[str, str] | None:
            """An Acknowledge / Confirm command's condition, from the book of the endpoint that has it."""
            return next((found for book in books.values() if (found := book.latest(device_id, name))), None)

        def template_members(device_id: str | None, metric: str) -> dict[str, DataType] | None:
            """A template member command's instance: its members as the source that reads it publishes them."""
            return next((found for source in self.sources if (found := source.template_members(device_id, metric))),
                        None)

        if isinstance(client, EdgeClient):
            self.commands = await start_commands(self.config, client, condition, template_members)
        for endpoint in self.config.opcua:
            tags = [(tag, self.config.device_id(tag)) for tag in self.config.tags_of(endpoint.name)]
            if not tags:
                log.warning("endpoint %s has no tags; not connecting to it", endpoint.name)
                continue
            source = OpcUaSource(endpoint, tags, client, data_dir=self.data_dir, stats=self.validation_stats,
                                 future_tolerance_ms=self.config.future_tolerance_ms,
                                 max_source_age_ms=int(self.config.max_source_age_s * 1000),
                                 alarm_book=books.get(endpoint.name),
                                 quality_book=(QualityAlarmBook(quality_tags(self.config, endpoint.name))
                                               if self.config.quality_alarms else None))
            self.sources.append(source)
            self._tasks.append(asyncio.create_task(source.run(), name=f"opcua-source-{endpoint.name}"))
        # no endpoint with node-level tags or structured tags (whose template definitions the NBIRTH
        # declares): nothing to wait for, the gate opens at once
        first_reads = [s.first_read for s in self.sources if s.has_node_tags or s.has_structured_tags]
        self._tasks.append(asyncio.create_task(_all_set(first_reads, node_values_read), name="first-birth-gate"))
        group_id, edge_node_id = self.config.sparkplug_ids()
        log.info("edge node %s/%s started: %d tag(s) on %d endpoint(s)", group_id, edge_node_id,
                 len(self.config.tags), len(self.sources))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)  # cancelled again if one swallows the first cancel (uns.aio)
        commands, self.commands = self.commands, None
        if commands is not None:
            await commands.stop()
        client, self.client = self.client, None
        if client is not None:
            await client.__aexit__(None, None, None)
        observability, self.observability = self.observability, None
        if observability is not None:
            await observability.stop()
        self._stop_event.set()
        log.info("edge node stopped")

    def request_stop(self) -> None:
        self._stop_event.set()

    async def run(self) -> None:
        """Run until :meth:`request_stop` or SIGINT/SIGTERM, then stop cleanly."""
        loop = asyncio.get_running_loop()
        installed: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.request_stop)
                installed.append(sig)
        try:
            await self.start()
            await self._stop_event.wait()
        finally:
            await self.stop()
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def wait_connected(self, timeout: float = 30.0) -> None:
        """Until every source has a live session (tests and ``uns up`` readiness)."""
        await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in self.sources)), timeout)

    @property
    def stats(self) -> dict[str, Any]:
        client_stats: dict[str, Any] | None = None
        if self.client is not None:
            try:
                client_stats = self.client.stats.as_dict()
            except Exception as exc:  # stats must never take the process down (nor a client without them)
                client_stats = {"error": str(exc)}
        return {
            "sparkplug": client_stats,
            "validation": self.validation_stats.as_dict(),
            "opcua": {s.endpoint.name: s.stats.as_dict() for s in self.sources},
            "commands": self.commands.executor.stats.as_dict() if self.commands is not None else None,
            "alarms": {s.endpoint.name: s.alarms.book.stats.as_dict() for s in self.sources if s.alarms is not None},
        }
