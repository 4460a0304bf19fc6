"""The embedded MQTT broker: amqtt 0.12.1, fixed for Sparkplug, with users, ACL and TLS.

Start it with ``uns broker`` (``uns broker run --config broker.yaml``) or from Python::

    from broker.config import load_settings
    from broker.server import EmbeddedBroker, run_broker
    async with EmbeddedBroker(load_settings(Path("broker.yaml"))) as b: ...

Modules, one reason to change each:

* :mod:`broker.topics`, :mod:`broker.acl`, :mod:`broker.policy` — topic-filter algebra, the
  allow/deny decisions, and the default Sparkplug roles (edge, host, explorer, admin). No I/O.
* :mod:`broker.sparkplug_aware` — birth certificates on ``$sparkplug/certificates/...`` and the
  duplicate edge-node alarm on ``$SYS/uns/alarms/duplicate-edge-node`` (JSON naming both client
  ids). No I/O.
* :mod:`broker.client_ids` — who may connect with which client id (ownership from the role table,
  ``reserved_client_ids``). :mod:`broker.packet_limit` — protocol limits on the byte stream
  (``max_packet_size_bytes``, wildcard topic names). No I/O.
* :mod:`broker.passwords` — the YAML password file (argon2id), :mod:`broker.config` — settings.
* :mod:`broker.auth_plugin`, :mod:`broker.amqtt_ext` — the thin amqtt shell: our auth plugin
  (argon2 off the event loop) and a ``Broker`` subclass that fixes amqtt's Will-on-keep-alive,
  retained-leak and QoS-upgrade faults, closes a taken-over connection (MQTT-3.1.4-2) and a
  connection that breaks the protocol limits. :mod:`broker.server` — start/stop.

The broker uses :mod:`uns` only, never ``edge_node`` or ``mes_adapter``.
"""
