"""The OPC UA shell around :class:`simulator.model.LineModel`: a real asyncua server.

It owns no line logic. Every tick it advances the model, pulls setpoints clients wrote, and writes
the samples that changed with ``write_attribute_value`` (value, StatusCode, SourceTimestamp), so a
fault in the model reaches clients as a real OPC UA status. The model keeps running while the
server is "restarted" (down for N seconds, then back on the same endpoint with the same node ids),
just as a PLC keeps producing while its OPC UA server reboots.

Address space (namespace ``urn:uns-hub:simulator``, string node ids = tag paths):
``Objects/<Line>/<Tag>``, ``Objects/<Line>/<Cell>/<Tag>``, ``Objects/<Line>/Synthetic/TagNNNNN``,
line methods on ``Objects/<Line>`` and test hooks on ``Objects/Simulation`` (see :mod:`methods`),
one OPC UA condition per alarm at ``Objects/<Line>/<Cell>/<Condition>`` whose events the Server
object emits (see :mod:`simulator.alarms` and :mod:`simulator.conditions`), and structured variables
and faceplate objects built from the same samples (see :mod:`simulator.structures`). Analog tags
are ``AnalogItemType`` variables with ``EURange`` and ``EngineeringUnits`` from the catalog (see
:mod:`simulator.engineering_units`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua

from simulator.address_space_build import reference_subtypes_remembered
from simulator.catalog import SIMULATION_OBJECT, TagSpec, synthetic_path, tag_catalog
from simulator.conditions import ConditionShell
from simulator.config import NAMESPACE_URI, SimulatorConfig
from simulator.engineering_units import add_engineering_properties
from simulator.errors import InvalidStateError
from simulator.event_queue import install as install_overflow_events
from simulator.faults import Sample
from simulator.methods import add_line_methods, add_simulation_methods
from simulator.model import LineModel, synthetic_value
from simulator.security import (
    APPLICATION_URI,
    POLICY_TYPES,
    ConfiguredUserManager,
    ensure_server_certificate,
    identity_tokens,
    permission_ruleset,
)
from simulator.structure_nodes import StructureShell
from uns.config_checks import PortInUseError, port_in_use

log = logging.getLogger(__name__)

VARIANT_TYPES: dict[str, ua.VariantType] = {
    "Boolean": ua.VariantType.Boolean,
    "Int32": ua.VariantType.Int32,
    "UInt32": ua.VariantType.UInt32,
    "UInt64": ua.VariantType.UInt64,
    "Double": ua.VariantType.Double,
    "String": ua.VariantType.String,
    "DateTime": ua.VariantType.DateTime,
}


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


# OPC UA encodes DateTime 1601-01-01 as 0, the "null" DateTime; typed nodes refuse a Null variant.
DATETIME_NULL = datetime(1601, 1, 1, tzinfo=UTC)


def to_variant(value: Any, vtype: ua.VariantType) -> ua.Variant:
    """A model value as a Variant: a missing DateTime is the null DateTime, any other None is Null."""
    if value is None:
        return ua.Variant(DATETIME_NULL, vtype) if vtype is ua.VariantType.DateTime else ua.Variant()
    return ua.Variant(value, vtype)


def to_datavalue(sample: Sample, vtype: ua.VariantType, server_ts: datetime) -> ua.DataValue:
    """A model sample as an OPC UA DataValue; a null value (Bad) becomes a Null variant."""
    if sample.value is None and sample.status == 0:
        variant = to_variant(None, vtype)
    else:
        variant = ua.Variant() if sample.value is None else ua.Variant(sample.value, vtype)
    return ua.DataValue(
        Value=variant,
        StatusCode=ua.StatusCode(sample.status),
        SourceTimestamp=_dt(sample.source_ts),
        ServerTimestamp=server_ts,
    )


class SimulatedLineServer:
    """A simulated production line served over OPC UA. Use ``async with`` or start()/stop()."""

    def __init__(self, config: SimulatorConfig, *, model: LineModel | None = None) -> None:
        self.config = config
        self.model = model or LineModel(config)
        self._catalog: list[TagSpec] = tag_catalog(config, include_truth=True, include_synthetic=False)
        self._server: Server | None = None
        self._conditions: ConditionShell | None = None
        #: condition events are lost on the way to clients while set (``SuppressAlarmEvents``)
        self.alarm_events_suppressed = False
        self.alarm_events_lost = 0
        self._prepared_conditions: ConditionShell | None = None
        self._ns: int | None = None
        self._node_ids: dict[str, ua.NodeId] = {}
        self._vtypes: dict[str, ua.VariantType] = {s.path: VARIANT_TYPES[s.datatype] for s in self._catalog}
        self._writable = [s.path for s in self._catalog if s.writable]
        self._mirrored: dict[str, Sample] = {}
        self._synthetic_ids: list[ua.NodeId] = []
        self._structures = StructureShell(config)
        self._synthetic_step = 0
        #: cleared, the synthetic tags hold their values (a test counts exactly the steps made)
        self.synthetic_running = True
        self._lock = asyncio.Lock()
        self._tick_task: asyncio.Task[None] | None = None
        self._extra_task: asyncio.Task[None] | None = None
        self._restart_task: asyncio.Task[None] | None = None
        self._running = False
        self.restarts = 0

    # ----------------------------------------------------------------- lifetime

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    @property
    def namespace_index(self) -> int:
        if self._ns is None:
            raise RuntimeError("the server has not started yet")
        return self._ns

    @property
    def listening(self) -> bool:
        return self._server is not None

    def node_id(self, path: str) -> ua.NodeId:
        """The NodeId of a tag path, e.g. ``Line1/Filler/GoodCount``."""
        return ua.NodeId(path, self.namespace_index)

    @property
    def synthetic_step(self) -> int:
        """Updates made to the synthetic tags so far; tag ``i`` holds ``synthetic_value(i, step)``."""
        return self._synthetic_step

    async def __aenter__(self) -> SimulatedLineServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on the endpoint and start ticking the model."""
        if self._running:
            return
        cfg = self.config
        if cfg.port and port_in_use(cfg.host, cfg.port):
            # asyncua would log a traceback before raising; a taken port is a config problem, say so plainly
            raise PortInUseError(f"port {cfg.port} on {cfg.host} is already in use, so the OPC UA simulator "
                                 "cannot listen on it; stop whatever holds it or choose another port")
        await self._listen()
        self._running = True
        self._tick_task = asyncio.create_task(self._tick_loop(), name="sim-tick")
        if self.config.extra_tags:
            self._extra_task = asyncio.create_task(self._extra_loop(), name="sim-extra")
        log.info("simulated line %s serving %s", self.config.line, self.endpoint)

    async def stop(self) -> None:
        """Stop ticking and listening; safe to call twice or after a failed start."""
        self._running = False
        for task in (self._restart_task, self._tick_task, self._extra_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._restart_task = self._tick_task = self._extra_task = None
        await self._close()

    async def restart(self, down_s: float) -> None:
        """Stop listening (dropping every session), stay down ``down_s`` s, then serve again."""
        if down_s < 0:
            raise ValueError("down_s must be >= 0")
        await self._close()
        self.restarts += 1
        log.warning("simulated OPC UA server down for %.1f s", down_s)
        down_since = time.monotonic()
        server = await self._prepare()  # build while down, so the outage is down_s, not down_s + 1 s
        await asyncio.sleep(max(0.0, down_s - (time.monotonic() - down_since)))
        if self._running:
            await self._go_live(server)
            log.warning("simulated OPC UA server back on %s", self.endpoint)

    def schedule_restart(self, down_s: float, delay_s: float = 0.2) -> None:
        """Restart from inside an OPC UA method call: let the call's response leave first."""

        async def _later() -> None:
            await asyncio.sleep(delay_s)
            await self.restart(down_s)

        if self._restart_task is not None and not self._restart_task.done():
            raise RuntimeError("a restart is already under way")
        self._restart_task = asyncio.create_task(_later(), name="sim-restart")

    async def tick_now(self) -> None:
        """Advance the model and mirror it at once (tests use it after a Python API call)."""
        async with self._lock:
            changed = self.model.tick()
            await self._mirror(changed)
            await self._fire_conditions()

    # ----------------------------------------------------------------- building

    async def _listen(self) -> None:
        await self._go_live(await self._prepare())

    async def _prepare(self) -> Server:
        """Build a fresh asyncua server with the full address space, not yet listening (~1 s)."""
        cfg = self.config
        security = cfg.security
        install_overflow_events()  # asyncua drops events from a full queue silently (simulator.event_queue)
        server = Server(user_manager=ConfiguredUserManager(security))
        server.iserver.bind_condition_methods = True  # asyncua's ConditionRefresh + Refresh events
        await server.init()
        server.set_endpoint(cfg.endpoint)
        server.set_server_name(f"uns-hub simulator {cfg.line}")
        await server.set_application_uri(APPLICATION_URI)
        server.set_security_policy([POLICY_TYPES[mode] for mode in security.modes],
                                   permission_ruleset=permission_ruleset(security))
        server.set_identity_tokens(identity_tokens(security))
        if any(mode != "None" for mode in security.modes):
            assert security.data_dir is not None  # the config validator guarantees it
            cert, key = await ensure_server_certificate(security.data_dir)
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
        self._ns = await server.register_namespace(NAMESPACE_URI)
        with reference_subtypes_remembered(server):
            await self._build_address_space(server)
        return server

    async def _go_live(self, server: Server) -> None:
        async with self._lock:
            await server.start()
            self._server = server
            self._conditions = self._prepared_conditions
            assert self._conditions is not None and self._conditions.server is server
            self._mirrored = {}
            self.model.alarms.drain()  # raised while down: the retained set below states them
            await self._conditions.seed(self.model.alarms.current(), self.model.alarms.retained())
            await self._mirror(self.model.samples())

    async def _build_address_space(self, server: Server) -> None:
        ns = self._ns
        assert ns is not None
        objects = server.nodes.objects
        line = await objects.add_object(ua.NodeId(self.config.line, ns), ua.QualifiedName(self.config.line, ns))
        sim = await objects.add_object(ua.NodeId(SIMULATION_OBJECT, ns), ua.QualifiedName(SIMULATION_OBJECT, ns))
        parents: dict[str, Any] = {self.config.line: line, SIMULATION_OBJECT: sim}
        self._node_ids = {}
        samples = self.model.samples()
        for spec in self._catalog:
            folder_path, _, name = spec.path.rpartition("/")
            parent = parents.get(folder_path)
            if parent is None:
                outer_path, _, folder_name = folder_path.rpartition("/")
                parent = await parents[outer_path].add_object(
                    ua.NodeId(folder_path, ns), ua.QualifiedName(folder_name, ns))
                parents[folder_path] = parent
            node_id = ua.NodeId(spec.path, ns)
            sample = samples[spec.path]
            vtype = self._vtypes[spec.path]
            initial = to_variant(sample.value, vtype)
            var = await parent.add_variable(node_id, ua.QualifiedName(name, ns), initial,
                                            datatype=ua.NodeId(vtype.value))
            if spec.writable:
                await var.set_writable()
            if spec.description:
                await var.write_attribute(ua.AttributeIds.Description,
                                          ua.DataValue(ua.Variant(ua.LocalizedText(spec.description))))
            await add_engineering_properties(var, spec)
            self._node_ids[spec.path] = node_id
        if self.config.extra_tags:
            folder_path = f"{self.config.line}/Synthetic"
            folder = await line.add_object(ua.NodeId(folder_path, ns), ua.QualifiedName("Synthetic", ns))
            self._synthetic_ids = []
            for index in range(self.config.extra_tags):
                path = synthetic_path(self.config.line, index)
                node_id = ua.NodeId(path, ns)
                await folder.add_variable(node_id, ua.QualifiedName(path.rpartition("/")[2], ns),
                                          ua.Variant(synthetic_value(index, self._synthetic_step),
                                                     ua.VariantType.Double))
                self._synthetic_ids.append(node_id)
        await self._structures.add_nodes(server, ns, parents, samples, set(self._writable))
        conditions = ConditionShell(server, ns)
        await conditions.add_nodes(parents, [(c.path, c.kind) for c in self.model.alarms.conditions.values()])
        conditions.bind_methods(self._acknowledge, self._confirm)
        self._prepared_conditions = conditions
        await add_line_methods(line, ns, self)
        await add_simulation_methods(sim, ns, self)

    async def _acknowledge(self, condition: str, event_id: bytes, comment: str) -> None:
        async with self._lock:
            self.model.acknowledge(condition, event_id, comment)
            await self._fire_conditions()

    async def _confirm(self, condition: str, event_id: bytes, comment: str) -> None:
        async with self._lock:
            self.model.confirm(condition, event_id, comment)
            await self._fire_conditions()

    async def _fire_conditions(self) -> None:
        events = self.model.alarms.drain()
        if self._conditions is not None and self._server is not None:
            await self._conditions.fire(events, deliver=not self.alarm_events_suppressed)
            if self.alarm_events_suppressed:
                self.alarm_events_lost += len(events)

    def suppress_alarm_events(self, suppress: bool) -> None:
        """Lose (or stop losing) condition events on the way to the clients, as a server whose event
        queue overflowed: the model, the condition nodes and ConditionRefresh still follow them."""
        self.alarm_events_suppressed = suppress

    async def add_faceplate_member(self, member: str) -> None:
        """Change ``CellFaceplateType`` live: a new Double member on the type and every faceplate
        (:meth:`simulator.structure_nodes.StructureShell.add_faceplate_member`); kept across restarts."""
        async with self._lock:
            if self._server is None:
                raise InvalidStateError("the server is down; add the member once it is up")
            await self._structures.add_faceplate_member(self._server, member)

    @property
    def added_faceplate_members(self) -> list[str]:
        """The faceplate members added while running, in order."""
        return list(self._structures.added_members)

    async def request_condition_refresh(self) -> None:
        """Emit a RefreshRequiredEvent: what a server that lost events must do (Part 9 5.11.1)."""
        async with self._lock:
            await self._fire_conditions()  # anything pending goes first, as it would on a real server
            if self._conditions is not None and self._server is not None:
                await self._conditions.refresh_required()

    async def _close(self) -> None:
        async with self._lock:
            server, self._server = self._server, None
            self._conditions = None
        if server is None:
            return
        # asyncua's stop() awaits its once-a-second ServerStatus clock task; cancel it so a stop or
        # restart does not block for up to 1 s (internals of asyncua 2.1, hence the getattr guard)
        clock_task = getattr(server.iserver, "time_task", None)
        if isinstance(clock_task, asyncio.Task):
            clock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await clock_task
            server.iserver.time_task = None
        with contextlib.suppress(Exception):
            await server.stop()

    # ----------------------------------------------------------------- ticking

    async def _tick_loop(self) -> None:
        """Tick on a fixed grid (no drift); a late tick is caught up by the model's dt, not skipped."""
        interval = self.config.tick_s
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while self._running:
            next_at += interval
            try:
                async with self._lock:
                    await self._pull_client_writes()
                    changed = self.model.tick(time.time())
                    await self._mirror(changed)
                    await self._fire_conditions()
            except Exception:
                log.exception("simulator tick failed; the line keeps running")
            delay = next_at - loop.time()
            if delay < -interval:
                next_at = loop.time()  # fell far behind: re-anchor instead of bursting
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))

    async def _pull_client_writes(self) -> None:
        """Setpoints a client wrote since the last tick go into the model (the model owns the line);
        a write to a faceplate member that mirrors a writable tag is a write to that tag."""
        server = self._server
        if server is None:
            return
        for path in self._writable:
            datavalue = server.read_attribute_value(self._node_ids[path])
            value = datavalue.Value.Value if datavalue.Value is not None else None
            mirrored = self._mirrored.get(path)
            if mirrored is None or value == mirrored.value:
                continue
            if await self._take_write(path, value, path):
                # the client's value stays in the address space until the model's next sample replaces it
                self._mirrored[path] = Sample(value, mirrored.status, mirrored.source_ts)
        for path, (member, value) in self._structures.client_writes(server).items():
            await self._take_write(path, value, member)

    async def _take_write(self, path: str, value: Any, written: str) -> bool:
        """A client's write of ``value`` to tag ``path`` (through node ``written``) into the model;
        refused (False): the model's value is put back on the node."""
        try:
            self.model.write_tag(path, value)
        except ValueError as exc:
            log.warning("ignored client write to %s: %s", written, exc)
            self._mirrored.pop(path, None)
            await self._mirror({path: self.model.sample(path)})  # put the model's value back (faceplate too)
            return False
        return True

    async def _mirror(self, changed: dict[str, Sample]) -> None:
        server = self._server
        if server is None:
            return
        server_ts = datetime.now(UTC)
        for path, sample in changed.items():
            node_id = self._node_ids.get(path)
            if node_id is None or self._mirrored.get(path) == sample:
                continue
            await server.write_attribute_value(node_id, to_datavalue(sample, self._vtypes[path], server_ts))
            self._mirrored[path] = sample
        await self._structures.write(server, self.model.samples(), changed)

    @property
    def structures(self) -> dict[str, Any]:
        """Every structured variable's value as the server holds it now (path -> dict or rows)."""
        return self._structures.current

    @property
    def structure_statuses(self) -> dict[str, int]:
        """The StatusCode of every structured variable as the server holds it now."""
        return self._structures.statuses

    async def _extra_loop(self) -> None:
        """Benchmark load: every synthetic Double changes every 1/extra_rate_hz seconds."""
        interval = 1.0 / self.config.extra_rate_hz
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while self._running:
            next_at += interval
            server = self._server
            if server is not None and self.synthetic_running:
                self._synthetic_step += 1
                step = self._synthetic_step
                now = datetime.now(UTC)
                for index, node_id in enumerate(self._synthetic_ids):
                    await server.write_attribute_value(node_id, ua.DataValue(
                        Value=ua.Variant(synthetic_value(index, step), ua.VariantType.Double),
                        SourceTimestamp=now, ServerTimestamp=now))
                    if index % 250 == 249:
                        # write_attribute_value never yields: without this a step of thousands of
                        # writes blocks the server's loop for up to a second and clients time out
                        await asyncio.sleep(0)
            delay = next_at - loop.time()
            if delay < -interval:
                next_at = loop.time()
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))
