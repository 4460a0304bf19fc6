"""The running MES adapter: the Sparkplug host, the MES core and the command path, wired together.

:class:`AdapterService` owns every long-lived part and its lifetime; the REST API
(:mod:`mes_adapter.api`) sees it only through :class:`~mes_adapter.service_api.ServiceApi`, which
reads from it and calls its few write methods. What flows where:

* host change stream → :class:`~mes_adapter.production.ingest.Ingest` (records + production counters), one
  stream of its own, subscribed *before* the host connects so no birth is missed;
* host change stream → :class:`~mes_adapter.status.live_feed.TagPump` → dashboard clients (SSE);
* host change stream → :class:`~mes_adapter.alarms.AlarmService` (condition alarms: journaled with their
  batch and phase, retained on ``<line>/_alarms/<cell>/_conditions/<Name>``);
* host change stream → :class:`~mes_adapter.episodes.EpisodeService` (quality episodes: stored with
  their batch, retained on ``<line>/_alarms/...``); every second the line status (``data_complete``)
  goes retained to ``<line>/_mes/status`` when it changed;
* ``<line>/_context/batch`` (retained, from any plant app) → :class:`ContextService`; assertions
  made through the API are stored first, then published retained so other apps see them;
* every few seconds → :class:`ConfirmationService` builds due confirmations into the outbox, they are
  published retained on ``<line>/_mes/confirmation`` and the webhook sender is woken; then each line's
  batch and shift OEE (with loss buckets) goes retained to ``<line>/_mes/oee/{batch,shift}`` when changed;
* commands: :class:`~mes_adapter.commands.service.CommandService`, results from ``<line>/_cmd/result/+``.

Nothing a peer sends stops a loop: each loop logs and counts its own failures and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mes_adapter.alarms import AlarmJournal, AlarmService, DecisionDesk
from mes_adapter.auth import Principal, SessionStore, TokenStore, UsersFile
from mes_adapter.commands.service import CommandRecord, CommandService
from mes_adapter.config.application import AdapterConfig
from mes_adapter.confirmations.outbox import OutboxEntry, WebhookSender, dead_letter_alarm, open_outbox
from mes_adapter.confirmations.service import ConfirmationService, batch_intervals, confirmation_message
from mes_adapter.context import AssertionOutcome, ContextAssertion, ContextService, context_topic
from mes_adapter.context.audited import api_actor, audited
from mes_adapter.context.reconcile import LineReport, ReconcileAction, Reconciliation, reconcile
from mes_adapter.crew import CrewService, CrewStore
from mes_adapter.downtime.losses import losses_dict
from mes_adapter.downtime.service import DowntimeService
from mes_adapter.downtime.store import ReasonStore
from mes_adapter.episodes import EpisodeService, EpisodeStore
from mes_adapter.errors import LineNotOwnedError, MesInputError
from mes_adapter.genealogy import GenealogyService, GenealogyStore
from mes_adapter.history import HistoryFeed, HistoryQueries, open_store
from mes_adapter.history.retention import enforce_retention
from mes_adapter.host import (
    Change,
    ChangeStream,
    MetricChange,
    MetricState,
    SparkplugHost,
)
from mes_adapter.host.uns_link import UnsLink
from mes_adapter.lines import parse_line_key
from mes_adapter.oee.compute import MachineState
from mes_adapter.oee.publisher import OeePublisher
from mes_adapter.oee.service import OeeService
from mes_adapter.orders import OrderService, OrderStore
from mes_adapter.production.ingest import Ingest, Observation, Placement, observation_from_change
from mes_adapter.production.quantities import ProductionCounters
from mes_adapter.production.records import ContextualRecords
from mes_adapter.quality import DispositionService, DispositionStore
from mes_adapter.state import open_state_stores
from mes_adapter.status.data_status import DataStatus, statuses_of_lines
from mes_adapter.status.live_feed import LiveFeed, TagPump
from mes_adapter.status.node_stats import NodeStats, observe_tracker
from mes_adapter.status.publisher import LineStatusPublisher
from mes_adapter.timefmt import now_ms
from uns.aio import cancel_and_wait
from uns.audit.chain import AuditLog
from uns.audit.decisions import Actor, DecisionAudit
from uns.commands.allowlist import Allowlist
from uns.commands.model import CommandResult
from uns.commands.signing import UserRegistry
from uns.conventions import Quality
from uns.isa95 import CMD, CONTEXT, EquipmentPath

if TYPE_CHECKING:
    from mes_adapter.instances import InstanceRegistry

log = logging.getLogger("uns.adapter")

#: while ingest writes fail, retry them this often (seconds)
_RETRY_S = 1.0

#: called with (event name, labels) for things the metrics module counts
Counter = Callable[[str, dict[str, str]], None]


def _ignore(_name: str, _labels: dict[str, str]) -> None:
    return None


class AdapterService:
    """Composition root of the adapter; construct, ``await start()``, ``await stop()``."""

    def __init__(self, config: AdapterConfig, *, count: Counter = _ignore) -> None:
        self.config = config
        self.count = count
        mes = config.mes
        self.mapping = config.host.mapping
        self.tokens = TokenStore.from_settings(config.auth.tokens, config.auth.tokens_file)
        self.sessions = SessionStore(UsersFile.load(config.auth.users_file).users if config.auth.users_file else {},
                                     config.auth.session_ttl_s)
        allowlist = Allowlist.load(config.commands.allowlist) if config.commands.allowlist else None
        registry = UserRegistry.load(config.commands.signers) if config.commands.signers else UserRegistry()

        self.host = SparkplugHost(config.host)
        self.node_stats = NodeStats()
        observe_tracker(self.host.tracker, self.node_stats)

        self._owned: dict[str, bool] = {}
        state = open_state_stores(mes)  # SQLite files, or the PostgreSQL shared by instances (mes.state_dsn)
        self.instance: InstanceRegistry | None = None
        if mes.state_dsn is not None:  # instances sharing the state own disjoint groups: checked there
            from mes_adapter.instances import InstanceRegistry

            self.instance = InstanceRegistry(mes.state_dsn, config.host.host_id, config.host.groups,
                                             mes.instance_lease_s, disposition_required=mes.disposition.required)
            self.instance.register()
        self.context_store = state.context
        self.context = ContextService(self.context_store, owns=self._owns_line)
        self.record_store = state.records
        self.records = ContextualRecords(self.record_store, self.context)
        self.production_store = state.production
        self.production = ProductionCounters(mes, self.production_store)
        self.outbox = open_outbox(mes)
        self.confirmations = ConfirmationService(mes, self.context, self.production, self.outbox)
        self.oee = OeeService(mes, self.context, self.production, self.record_store)
        self.downtime = DowntimeService(mes, self.oee, self.record_store, ReasonStore(mes.downtime_db))
        self.oee_publisher = OeePublisher(
            mes, self.context, self.oee, self.mapping,
            lambda topic, payload: self.link.publish(topic, payload, qos=1, retain=True),
            losses=lambda line, window: losses_dict(self.downtime.losses(line, window)))
        self.ingest = Ingest(mes, self.production, self.record_store)
        self.feed = LiveFeed()
        root = f"{self.mapping.mirror_root}/" if self.mapping.mirror_root else ""
        self.link = UnsLink(config.host.broker, f"uns-adapter-{config.host.host_id}",
                            keepalive_s=config.host.keepalive_s, reconnect_min_s=config.host.reconnect_min_s,
                            reconnect_max_s=config.host.reconnect_max_s)
        self.audit = AuditLog(config.audit_path, witness_path=config.audit.witness_path,
                              checkpoint_every=config.audit.checkpoint_every,
                              checkpoint_interval_s=config.audit.checkpoint_interval_s)
        #: batch decisions (context, requeues, dispositions, config) into the same chain as commands
        self.decisions = DecisionAudit(self.audit, "mes-adapter")
        self.decisions.config_loaded(config.config_files())
        self.disposition_store = DispositionStore(mes.disposition_db)
        self.quality = DispositionService(self.disposition_store, registry, self._batch_rejects, self.decisions)
        if mes.disposition.required:
            self.confirmations.dispositions = self._disposition_totals
        self.commands = CommandService(allowlist=allowlist, registry=registry, audit=self.audit, link=self.link,
                                       model=self.host.model, mapping=self.mapping, context=self.context,
                                       on_change=self._command_changed, keep_finished=config.commands.keep_finished)
        self.genealogy = GenealogyService(GenealogyStore(mes.genealogy_db), audit=self.decisions)
        self.confirmations.lots_of = self.genealogy.consumed_by
        self.crew = CrewService(CrewStore(mes.crew_db), lambda line: mes.line(line) is not None, audit=self.decisions)
        self.confirmations.labour_time = self.crew.labour_ms
        # a batch started from an order: the signed StartBatch command (audited with its signers) was
        # confirmed by the PLC, and the adapter asserts the batch it started
        self.orders = OrderService(OrderStore(mes.orders_db), mes.orders, self.context, self.commands,
                                   lambda a: self.assert_context(a, actor=Actor.service("orders")),
                                   audit=self.decisions)
        self.sender: WebhookSender | None = None
        if mes.webhook.url is not None:
            self.sender = WebhookSender(self.outbox, mes.webhook, mes.retry, on_dead_letter=self._dead_letter)
        self.episodes = EpisodeService(
            EpisodeStore(mes.data_dir / "episodes.sqlite"), self.context, self.mapping, self.topic_of,
            lambda topic, payload, retain: self.link.publish(topic, payload, qos=1, retain=retain),
            notify=lambda e: self.feed.publish({"type": "episode", "episode": e.model_dump(mode="json")}))
        self.oee.gaps = self.episodes.window_gaps
        self.confirmations.machine_time = self.oee.running_ms
        self.alarms = AlarmService(
            AlarmJournal(mes.data_dir / "alarms.sqlite"), self.context, self.mapping,
            lambda topic, payload, retain: self.link.publish(topic, payload, qos=1, retain=retain),
            notify=lambda e: self.feed.publish({"type": "alarm", "alarm": e.model_dump(mode="json")}))
        self.alarm_desk = DecisionDesk(self.alarms.journal.connection, mes.alarms, registry, self.audit,
                                      self._publish_hold, now_ms)
        self.alarms.on_journaled = self.alarm_desk.on_alarm
        self.confirmations.held = self.alarm_desk.is_held
        self.line_status = LineStatusPublisher(
            self.mapping, self.lines, self.data_statuses,
            lambda topic, payload: self.link.publish(topic, payload, qos=1, retain=True),
            notify=lambda line, st: self.feed.publish({"type": "line_status", "line": line, **st.model_dump()}))
        self.link.on(f"{root}+/+/+/+/{CONTEXT}/#", self._on_context)
        self.link.on(f"{root}+/+/+/+/{CMD}/result/+", self.commands.handle_result)
        self.link.on(f"{root}+/+/+/+/{CMD}/result/+", self._order_start_result)
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self.ingest_errors = 0
        #: the start-up reconciliation of each line's context (see :mod:`mes_adapter.context.reconcile`)
        self.reconciliations: dict[str, Reconciliation] = {}
        #: last value and source time of each line's batch and state tags, as ingested
        self._line_signals: dict[tuple[str, str, str], tuple[object, int]] = {}
        self._reconcile_due: set[str] = set()
        self._reconcile_lock = threading.Lock()
        self._placement = Placement(self.mapping)
        #: the historian (None when ``historian.enabled`` is false): fed from its own lossless stream
        self.history: HistoryFeed | None = None
        self.history_queries: HistoryQueries | None = None
        if config.historian.enabled:
            store = open_store(config.historian, config.data_dir)
            self.history = HistoryFeed(store, self.equipment_of, max_batches=config.historian.queue_batches)
            self.history_queries = HistoryQueries(store, self.equipment_of, config.historian.max_points)
        #: (line, cell, metric) of every configured batch and state tag
        self._watched = {(c.line, s.cell or "", s.metric) for c in mes.lines for s in (c.batch, c.state)
                         if s is not None}

    # -- lifetime ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("adapter already started")
        self._started = True
        #: records and counters: lossless (its depth holds the host back, see _ingest_loop)
        self.ingest_stream = self.host.model.subscribe(lossless=True)
        pump = TagPump(self.host.model, self.feed, self.topic_of)
        self._spawn("ingest", self._ingest_loop(self.ingest_stream))
        self._spawn("tag-pump", pump.run(self.stopping))
        self._spawn("episodes", self.episodes.run(self.host.model.subscribe(lossless=True), self.stopping))
        self._spawn("alarms", self.alarms.run(self.host.model.subscribe(lossless=True), self.stopping))
        self._spawn("line-status", self.line_status.run(self.stopping))
        if self.history is not None:  # lossless: a slow historian holds the host back, never drops
            self._spawn("history", self.history.run(self.host.model.subscribe(lossless=True), self.stopping))
            every_s = self.config.historian.retention_check_s
            self._spawn("history-retention", enforce_retention(self.history.store, every_s, self.stopping))
        self._spawn("confirmations", self._confirmation_loop())
        if self.instance is not None:
            self._spawn("instance-heartbeat", self._instance_heartbeat(self.instance))
        if self.sender is not None:
            self._spawn("webhook", self.sender.run(self.stopping))
        await self.link.start()
        await self.host.start()
        log.info("adapter started: host %s on %s", self.config.host.host_id, self.config.host.broker)

    async def _instance_heartbeat(self, instance: InstanceRegistry) -> None:
        """Renew this instance's claim on its groups in the shared MES state (see mes_adapter.instances)."""
        while not self.stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), instance.lease_s / 3)
            if self.stopping.is_set():
                return
            try:
                await asyncio.to_thread(instance.heartbeat)
            except Exception as exc:  # noqa: BLE001 - the database is away: the lease says so to the others
                log.warning("adapter instance heartbeat failed (retried in %.0f s): %s", instance.lease_s / 3, exc)

    async def stop(self) -> None:
        """Stop the loops, the host (STALE mirror, STATE offline) and the link; close every store."""
        self.stopping.set()
        await cancel_and_wait(self._tasks)  # cancelled again if one swallows the first cancel (uns.aio)
        self._tasks.clear()
        if self._started:
            await self.host.stop()
            await self.link.stop()
        if self.sender is not None:
            with contextlib.suppress(Exception):
                await self.sender.aclose()
        with contextlib.suppress(Exception):
            self.ingest.flush()
        if self.history is not None:
            try:
                await self.history.stop()  # everything accepted reaches the store before it closes
            except Exception:  # noqa: BLE001 - the store failed: what it holds is durable, the log says why
                log.exception("historian writer stopped on an error")
            with contextlib.suppress(Exception):
                self.history.store.close()
        if self.instance is not None:  # after the last write: the groups are free at once
            await asyncio.to_thread(self.instance.release)
        self.audit.close()
        for store in (self.record_store, self.outbox, self.context_store, self.production_store, self.episodes.store,
                      self.disposition_store, self.downtime.store, self.orders.store, self.genealogy.store,
                      self.crew.store,
                      self.alarms.journal):
            with contextlib.suppress(Exception):
                store.close()
        log.info("adapter stopped")

    def readiness(self) -> dict[str, str]:
        """Each readiness check that fails now, by name, with what it means; empty when ready.

        Why each one counts: without the Sparkplug session nothing new arrives; without the mirror
        the retained UNS goes stale (a restarted broker may hold none of it); without the UNS link
        context and command results are not heard and confirmations wait; while the MES core's
        writes (ingest, quality episodes) fail, what it records falls behind.
        """
        broker = self.config.host.broker
        failing: dict[str, str] = {}
        if not self.host.online:
            failing["sparkplug_host"] = f"Sparkplug host session not online on {broker}"
        if not self.host.mirror_connected:
            failing["uns_mirror"] = f"UNS mirror not connected to {broker}"
        if not self.link.connected:
            failing["uns_link"] = f"UNS session (context, command results) not connected to {broker}"
        if self.ingest.failing is not None:
            failing["mes_ingest"] = f"ingest failing: {self.ingest.failing} ({self.ingest.pending} values waiting)"
        if self.instance is not None and self.instance.conflict is not None:
            failing["instance"] = f"another adapter instance owns some of this one's groups: {self.instance.conflict}"
        if self.episodes.failing is not None:
            failing["quality_episodes"] = self.episodes.failing
        if self.alarms.failing is not None:
            failing["alarm_journal"] = self.alarms.failing
        if self.history is not None and self.history.failing is not None:
            failing["historian"] = f"historian writes failing: {self.history.failing} (the host is held back)"
        return failing

    def _spawn(self, name: str, coro: Awaitable[None]) -> None:
        self._tasks.append(asyncio.create_task(self._guard(name, coro), name=f"adapter-{name}"))

    async def _guard(self, name: str, coro: Awaitable[None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("adapter loop %s died", name)

    # -- host → MES core ---------------------------------------------------------------------

    async def _ingest_loop(self, stream: ChangeStream) -> None:
        """Feed every change to the MES core; while writes fail, retry every ``_RETRY_S`` and stop
        taking changes once :attr:`Ingest.full` (the lossless stream then holds the host back)."""
        try:
            while not self.stopping.is_set():
                if self.ingest.failing is not None:
                    await self._ingest_while_failing(stream)
                    continue
                first = await stream.get()
                self._ingest_one(first)
                self._ingest_available(stream)
                self._flush()
                await asyncio.sleep(0)
        finally:
            stream.close()

    async def _ingest_while_failing(self, stream: ChangeStream) -> None:
        """Keep taking changes (until :attr:`Ingest.full`) and retry the writes every ``_RETRY_S``."""
        loop = asyncio.get_running_loop()
        next_retry = loop.time() + _RETRY_S
        while self.ingest.failing is not None and not self.stopping.is_set():
            wait = max(0.0, next_retry - loop.time())
            if self.ingest.full:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), wait)
            else:
                await stream.wait_ready(wait)
                self._ingest_available(stream)
            if loop.time() >= next_retry:
                self._flush()
                next_retry = loop.time() + _RETRY_S

    def _ingest_available(self, stream: ChangeStream) -> None:
        while not self.ingest.full and (change := stream.get_nowait()) is not None:
            self._ingest_one(change)
        self._reconcile_due_lines()

    def _flush(self) -> None:
        try:
            self.ingest.flush()
        except Exception:  # noqa: BLE001 - our bug, not the disk: count, keep ingesting
            self.ingest_errors += 1
            log.exception("records flush failed")

    def _ingest_one(self, change: Change) -> None:
        if not isinstance(change, MetricChange):
            return
        try:
            obs = observation_from_change(change, self._placement)
            if obs is not None:
                self.ingest.observe(obs)
                if not change.from_certificate:  # old news: the line's batch and state tags are only
                    self._line_signal(obs, change.birth)  # believed from a live birth or data (see reconcile)
        except Exception:  # noqa: BLE001 - one bad value must not stop the stream
            self.ingest_errors += 1
            log.exception("ingest failed for %s", change.metric.name)

    # -- batch context -----------------------------------------------------------------------

    def _publish_hold(self, line: str, hold: dict[str, Any]) -> None:
        """A batch hold or release, retained on ``<line>/_context/hold`` (the adapter ignores it on the way in)."""
        topic = self.mapping.line_topic(parse_line_key(line), CONTEXT, "hold")
        self.link.publish(topic, json.dumps(hold, separators=(",", ":")).encode(), qos=1, retain=True)

    async def _on_context(self, topic: str, payload: bytes) -> None:
        try:
            line, _segment, rest = self.mapping.parse_line_topic(topic)
        except ValueError:
            self.count("context_ignored", {"why": "topic"})
            return
        if not self.config.owns_line(line.topic):
            self.count("context_ignored", {"why": "group"})  # another instance's line (host.groups)
            return
        if rest[:1] == ["material"]:
            self._on_material(line.topic, payload)
            return
        if rest == ["crew"]:
            self._on_crew(line.topic, payload)
            return
        if rest != ["batch"]:
            self.count("context_ignored", {"why": "not_batch"})
            return
        try:
            actor = Actor.broker_user(self._context_publisher(line.topic))
            outcome = audited(self.context, self.decisions, line.topic, actor, "uns",
                              lambda: self.context.handle_retained(line.topic, payload))
        except MesInputError as exc:
            self.count("context_assertions", {"source": "uns", "outcome": "refused"})
            log.warning("context on %s refused: %s", topic, exc)
            return
        if outcome is AssertionOutcome.ACCEPTED:
            self.count("context_assertions", {"source": "uns", "outcome": "accepted"})
            self._context_event(line.topic)

    def _batch_rejects(self, line: str, batch_id: str) -> float | None:
        """Rejects the line's counters counted while the batch ran (None: it never ran there)."""
        window = self.context.batch_window(line, batch_id)
        if window is None:
            return None
        return self.production.quantities(line, batch_intervals(window)).scrap

    def _disposition_totals(self, line: str, batch_id: str) -> tuple[float, float, float]:
        split = self.quality.totals(line, batch_id)
        return split.scrap, split.rework, split.accepted

    def _context_publisher(self, line: str) -> str | None:
        """The broker user configured as the only publisher of the line's ``_context`` (see LineConfig)."""
        for cfg in self.config.mes.lines:
            if cfg.line == line:
                return cfg.context_publisher
        return None

    def _on_material(self, line: str, payload: bytes) -> None:
        """A lot consumed or produced, asserted on ``<line>/_context/material[/...]`` (see genealogy)."""
        if not payload:
            return  # a cleared retained message
        try:
            outcome = self.genealogy.handle_uns(line, payload,
                                                Actor.broker_user(self._context_publisher(line)))
        except MesInputError as exc:
            self.count("material_assertions", {"source": "uns", "outcome": "refused"})
            log.warning("material assertion on %s refused: %s", line, exc)
            return
        self.count("material_assertions", {"source": "uns", "outcome": outcome.value})

    def _on_crew(self, line: str, payload: bytes) -> None:
        """A person's presence on the line, asserted on ``<line>/_context/crew`` (see mes_adapter.crew)."""
        if not payload:
            return  # a cleared retained message
        try:
            outcome = self.crew.handle_uns(line, payload, Actor.broker_user(self._context_publisher(line)))
        except MesInputError as exc:
            self.count("crew_assertions", {"source": "uns", "outcome": "refused"})
            log.warning("crew assertion on %s refused: %s", line, exc)
            return
        self.count("crew_assertions", {"source": "uns", "outcome": outcome.value})

    def _owns_line(self, line: str) -> bool:
        """This instance's line (see ``AdapterConfig.owns_line``); a key that is no line path counts as
        its own, so a read of it finds nothing in memory rather than failing. Remembered per line (the
        config does not change while it runs): context reads of alarms and episodes ask it per event."""
        owned = self._owned.get(line)
        if owned is None:
            try:
                owned = self.config.owns_line(line)
            except ValueError:
                owned = True
            if len(self._owned) < 10_000:  # API callers choose keys: the memory stays bounded
                self._owned[line] = owned
        return owned

    def check_owns(self, line: str) -> None:
        """Refuse (:class:`LineNotOwnedError`) a write for a line of another instance's group: another
        instance's batches are read here (shared state) but never changed."""
        if not self.config.owns_line(line):
            raise LineNotOwnedError(f"line {line} is in Sparkplug group {self.config.line_group(line)!r}, which this "
                                    "adapter instance does not own (host.groups: "
                                    f"{', '.join(self.config.host.groups or ())})")

    def assert_context(self, assertion: ContextAssertion, who: Principal | None = None, *,
                       actor: Actor | None = None) -> AssertionOutcome:
        """Accept an assertion from the API (stored first, audited as ``who``, or as ``actor`` when the
        adapter itself decides, e.g. a batch started from an order), then publish it retained."""
        self.check_owns(assertion.line)
        actor = actor or api_actor(who)
        outcome = audited(self.context, self.decisions, assertion.line, actor, "api",
                          lambda: self.context.assert_context(assertion))
        assert outcome is not None  # an assertion (not a clear) always has an outcome
        self.count("context_assertions", {"source": "api", "outcome": outcome.value})
        if outcome is AssertionOutcome.ACCEPTED:
            self.link.publish(context_topic(self.mapping, assertion.line), assertion.to_payload(), qos=1, retain=True)
            self._context_event(assertion.line)
        return outcome

    def _context_event(self, line: str) -> None:
        current = self.context.current(line)
        self.feed.publish({"type": "context", "line": line,
                           "context": current.model_dump(mode="json") if current is not None else None})

    # -- start-up reconciliation of the context with the line --------------------------------

    def _line_signal(self, obs: Observation, birth: bool) -> None:
        """Remember the batch/state tag values; reconcile a line at its first birth after start."""
        key = (obs.line, obs.cell or "", obs.metric)
        if key not in self._watched:
            return
        if obs.quality in (Quality.GOOD, Quality.UNCERTAIN):
            self._line_signals[key] = (obs.value, obs.source_ts_ms)
        if birth and obs.line not in self.reconciliations:
            self._reconcile_due.add(obs.line)  # after the whole birth is ingested

    def _reconcile_due_lines(self) -> None:
        while self._reconcile_due:
            line = self._reconcile_due.pop()
            try:
                self.reconcile_line(line)
            except Exception:  # noqa: BLE001 - a failed check must not stop ingest; it is retried at the next birth
                log.exception("reconciling the context of %s failed", line)

    def line_report(self, line: str) -> LineReport:
        """What the line's batch and state tags said last (None where unknown or not mapped)."""
        cfg = self.config.mes.line(line)
        tag = tag_ts = state = executing = None
        if cfg is not None and cfg.batch is not None:
            seen = self._line_signals.get((line, cfg.batch.cell or "", cfg.batch.metric))
            if seen is not None:
                tag, tag_ts = ("" if seen[0] is None else str(seen[0])), seen[1]
        if cfg is not None and cfg.state is not None:
            seen = self._line_signals.get((line, cfg.state.cell or "", cfg.state.metric))
            if seen is not None:
                state = str(seen[0])
                executing = cfg.state.categorize(seen[0]) is MachineState.RUNNING
        return LineReport(tag, tag_ts, state, executing)

    def reconcile_line(self, line: str) -> Reconciliation:
        """Check the line's context against what it reports, act, and say what was done.

        Done once per line per start (at the line's first birth, or when a batch start needs it
        before the birth came); returns the stored outcome on later calls."""
        with self._reconcile_lock:  # the API calls this from its worker threads, ingest from the loop
            return self._reconcile_line(line)

    def _reconcile_line(self, line: str) -> Reconciliation:
        done = self.reconciliations.get(line)
        if done is not None:
            return done
        report = self.line_report(line)
        now = now_ms()
        result = reconcile(line, self.context.current(line), report, now)
        if result.action is ReconcileAction.ENDED and result.end_ms is not None:
            last = self.context.last_seq(line)
            running = self.context.current(line)
            end = ContextAssertion(
                line=line, seq=0 if last is None else last + 1, since_ms=result.end_ms, batch_id=result.batch_id,
                work_order_id=running.work_order_id if running is not None else None,
                asserted_by="adapter:reconcile", ended=True)
            audited(self.context, self.decisions, line, Actor.service("mes-adapter:reconcile"), "reconcile",
                    lambda: self.context.assert_context(end))
            assertion = self.context.current(line)
            if assertion is not None:
                self.link.publish(context_topic(self.mapping, line), assertion.to_payload(), qos=1, retain=True)
            self._context_event(line)
        if report.batch_tag is None and report.state is None and result.action is ReconcileAction.KEPT:
            return result  # nothing known yet: decide again when the line's tags arrive
        self.reconciliations[line] = result
        log.log(logging.WARNING if result.action is ReconcileAction.ENDED else logging.INFO,
                "context of %s reconciled with the line at start: %s", line, result.detail)
        self.count("context_reconciled", {"action": result.action.value})
        self.feed.publish({"type": "context_reconciled", "line": line, "action": result.action.value,
                           "batch_id": result.batch_id, "detail": result.detail, "at_ms": now})
        return result

    # -- confirmations -----------------------------------------------------------------------

    async def _confirmation_loop(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.config.confirmations_every_s)
            if self.stopping.is_set():
                break
            self.run_confirmations()
            self.publish_oee()

    def run_confirmations(self) -> int:
        """Build and queue every due confirmation now; returns how many were new.

        Nothing is built while ingest writes fail: counts are still waiting for their store, and
        a confirmation built now would be short (it is built, complete, once they are written)."""
        try:
            self.ingest.flush()
            if self.ingest.failing is not None:
                return 0
            new = self.confirmations.run_due()
        except Exception:  # noqa: BLE001
            log.exception("building confirmations failed")
            return 0
        for confirmation in new:  # retained: the latest confirmation of each line for late subscribers
            topic, payload = confirmation_message(self.mapping, confirmation)
            self.link.publish(topic, payload, qos=1, retain=True)
            self.feed.publish({"type": "confirmation", "confirmation": confirmation.model_dump(mode="json")})
        if new and self.sender is not None:
            self.sender.wake()
        return len(new)

    def publish_oee(self) -> int:
        """Publish each line's batch and shift OEE retained on ``_mes/oee/...`` when it changed."""
        try:
            return self.oee_publisher.tick()
        except Exception:  # noqa: BLE001 - our bug or the disk: log, the next round tries again
            log.exception("publishing OEE failed")
            return 0

    def _dead_letter(self, entry: OutboxEntry) -> None:
        topic, payload = dead_letter_alarm(self.mapping, entry)
        self.link.publish(topic, payload, qos=1, retain=True)
        self.feed.publish({"type": "outbox", "confirmation_id": entry.confirmation_id, "status": entry.status.value})

    # -- commands ----------------------------------------------------------------------------

    def _order_start_result(self, _topic: str, payload: bytes) -> None:
        """A command result the command service no longer holds may still start an order (after a restart)."""
        try:
            result = CommandResult.from_bytes(payload)
        except ValueError:
            return  # the command service counts it as invalid
        if self.commands.get(result.command_id) is None:
            self.orders.result_after_restart(result)

    def _command_changed(self, record: CommandRecord) -> None:
        self.orders.command_changed(record)  # an order's start command moves the order on
        self.count("command_outcomes", {"outcome": record.status.value,
                                        "reason": record.decision.reason.value
                                        if record.decision is not None and record.decision.reason else ""})
        self.feed.publish({"type": "command", "command_id": str(record.request.command_id),
                           "status": record.status.value, "message": record.message})

    # -- placement helpers (API and feed) ----------------------------------------------------

    def topic_of(self, state: MetricState) -> str | None:
        topics = self.host.mirror.topics_for(state.group_id, state.edge_node_id, state.device_id, state.name)
        return None if topics is None else topics[0]

    def equipment_of(self, group_id: str, edge_node_id: str, device_id: str | None) -> EquipmentPath | None:
        return self._placement(group_id, edge_node_id, device_id)  # remembered per ids, as for ingest

    def data_status(self, line: str) -> DataStatus:
        """Whether the line's live inputs are complete, and if not why (API, ``_mes/status``, dashboard)."""
        return self.data_statuses([line])[line]

    def data_statuses(self, lines: list[str]) -> dict[str, DataStatus]:
        """:meth:`data_status` of each of ``lines``, in one walk of the live model."""
        return statuses_of_lines(self.host.model, self.equipment_of, self.topic_of, lines,
                                 lambda line: self.config.mes.line(line) is not None)

    def lines(self) -> list[str]:
        """Configured lines, lines with context, and lines whose nodes the host has seen."""
        found: set[str] = {line.line for line in self.config.mes.lines}
        found.update(self.context.lines())
        for node in self.host.model.nodes():
            for device_id in [None, *node.devices]:
                equipment = self.equipment_of(node.group_id, node.edge_node_id, device_id)
                if equipment is not None:
                    found.add(equipment.line.topic)
        return sorted(found)

    def stats_snapshot(self) -> dict[str, Any]:
        return {"link": {"connected": self.link.connected, "messages_in": self.link.messages_in,
                         "messages_out": self.link.messages_out, "dropped": self.link.dropped},
                "feed": {"clients": self.feed.clients, "published": self.feed.published,
                         "dropped": self.feed.dropped},
                "ingest_errors": self.ingest_errors,
                "historian": None if self.history is None else {
                    "accepted": self.history.accepted, "written": self.history.writer.written,
                    "queued_batches": self.history.writer.queued(), "restated": self.history.restated,
                    "skipped_types": self.history.skipped_types, "failing": self.history.failing},
                "ingest": {"failing": self.ingest.failing, "write_failures": self.ingest.write_failures,
                           "pending": self.ingest.pending, "records_quarantined": self.record_store.quarantined,
                           "counter_samples_quarantined": self.production.quarantined}}
