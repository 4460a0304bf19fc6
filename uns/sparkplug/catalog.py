"""What an edge node declared in its births: names, aliases and datatypes, per device.

A DATA message carries aliases without names and values without datatypes, so a decoder needs
the births. One :class:`EdgeNodeCatalog` per edge node (group_id, edge_node_id): an NBIRTH starts
a new session and forgets everything; each DBIRTH replaces that device's entries. Aliases are
unique across the node and all its devices (tck-id-payloads-alias-uniqueness); a birth that
reuses one is a peer's error.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import Resolver, decode_payload
from .datatypes import DataType
from .errors import RemoteProtocolError, UnknownAliasError
from .model import Metric, Payload, Template
from .topic import MessageType

NODE = None  # device key of node-level metrics


@dataclass(frozen=True, slots=True)
class MetricInfo:
    device_id: str | None
    name: str
    datatype: DataType
    alias: int | None


class EdgeNodeCatalog:
    """Birth-learned metric table of one edge node."""

    def __init__(self) -> None:
        self._by_name: dict[str | None, dict[str, MetricInfo]] = {}
        self._by_alias: dict[int, MetricInfo] = {}
        self.template_definitions: dict[str, Template] = {}

    # -- learning ---------------------------------------------------------------------------

    def learn_nbirth(self, payload: Payload) -> None:
        """A new session: drop every node and device entry, then learn the node metrics."""
        self._by_name.clear()
        self._by_alias.clear()
        self.template_definitions.clear()
        self._learn(NODE, payload.metrics)
        for metric in payload.metrics:
            if metric.datatype is DataType.Template and isinstance(metric.value, Template) \
                    and metric.value.is_definition and metric.name:
                self.template_definitions[metric.name] = metric.value

    def learn_dbirth(self, device_id: str, payload: Payload) -> None:
        self.forget_device(device_id)
        self._learn(device_id, payload.metrics)

    def forget_device(self, device_id: str) -> None:
        old = self._by_name.pop(device_id, {})
        for info in old.values():
            if info.alias is not None:
                self._by_alias.pop(info.alias, None)

    def _learn(self, device_id: str | None, metrics: list[Metric]) -> None:
        table: dict[str, MetricInfo] = {}
        added: list[int] = []
        try:
            for metric in metrics:
                assert metric.name is not None and metric.datatype is not None  # the decoder checked births
                info = MetricInfo(device_id, metric.name, metric.datatype, metric.alias)
                if metric.alias is not None:
                    clash = self._by_alias.get(metric.alias)
                    if clash is not None:
                        where = "the node" if clash.device_id is None else f"device {clash.device_id!r}"
                        raise RemoteProtocolError(
                            f"alias {metric.alias} of {metric.name!r} is already bound to {clash.name!r} "
                            f"of {where} (tck-id-payloads-alias-uniqueness)"
                        )
                    self._by_alias[metric.alias] = info
                    added.append(metric.alias)
                table[metric.name] = info
        except RemoteProtocolError:
            for alias in added:
                self._by_alias.pop(alias, None)
            raise
        self._by_name[device_id] = table

    # -- lookup -----------------------------------------------------------------------------

    def has_device(self, device_id: str | None) -> bool:
        return device_id in self._by_name

    def metrics(self, device_id: str | None = NODE) -> dict[str, MetricInfo]:
        return dict(self._by_name.get(device_id, {}))

    def lookup(self, device_id: str | None, name: str | None, alias: int | None) -> MetricInfo:
        """The birth entry of a DATA/CMD metric; :class:`UnknownAliasError` names what is missing."""
        if alias is not None:
            info = self._by_alias.get(alias)
            if info is None or info.device_id != device_id:
                raise self._unknown(device_id, f"alias {alias}" + (f" ({name!r})" if name else ""))
            return info
        info = self._by_name.get(device_id, {}).get(name)  # type: ignore[arg-type]
        if info is None:
            raise self._unknown(device_id, f"metric {name!r}")
        return info

    def _unknown(self, device_id: str | None, what: str) -> UnknownAliasError:
        if NODE not in self._by_name:
            return UnknownAliasError(f"{what} arrived before any NBIRTH of this edge node")
        if device_id is not None and device_id not in self._by_name:
            return UnknownAliasError(f"{what} arrived before any DBIRTH of device {device_id!r}")
        where = "the node" if device_id is None else f"device {device_id!r}"
        return UnknownAliasError(f"{what} was never declared in a birth of {where} "
                                 "(tck-id-payloads-alias-uniqueness: aliases come from births)")

    def resolver(self, device_id: str | None = NODE) -> Resolver:
        """A ``resolve(name, alias)`` for :func:`decode_payload`; one dict hit on the hot path."""
        by_alias = self._by_alias
        lookup = self.lookup

        def resolve(name: str | None, alias: int | None) -> tuple[str, DataType]:
            info = by_alias.get(alias) if alias is not None else None
            if info is None or info.device_id != device_id:
                info = lookup(device_id, name, alias)
            return info.name, info.datatype

        return resolve

    # -- the common path ----------------------------------------------------------------------

    def decode(self, message_type: MessageType, data: bytes, device_id: str | None = NODE) -> Payload:
        """Decode an edge node's message and learn from it if it is a birth.

        NCMD/DCMD sent to the node resolve against its births too. Node Control metrics in an
        NCMD travel by name and may be absent from the catalog (e.g. a rebirth before any NBIRTH
        was seen); those are decoded by inferring the type from the value field.
        """
        if message_type is MessageType.NBIRTH:
            payload = decode_payload(data, message_type)
            self.learn_nbirth(payload)
            return payload
        if message_type is MessageType.DBIRTH:
            assert device_id is not None
            payload = decode_payload(data, message_type)
            self.learn_dbirth(device_id, payload)
            return payload
        if message_type is MessageType.NDEATH:
            return decode_payload(data, message_type)
        return decode_payload(data, message_type, self.resolver(device_id))
