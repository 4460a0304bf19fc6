"""The MES adapter: Sparkplug primary host, UNS mirror, MES core (records, confirmations, OEE), REST API.

Sub-packages, grouped by what makes them change:

* ``host/``          — the Sparkplug B protocol as a primary host, the UNS JSON mirror, and the adapter's
  plain MQTT session on the UNS (``uns_link``): changes with Sparkplug, MQTT or mirror rules.
* ``production/``    — what a line made: records of every value, PLC counters → quantities, ingest of
  the host's changes into both: changes with counter semantics or record storage.
* ``confirmations/`` — production confirmations to the MES: windows and ids (``planning``), building
  what is due (``service``), the durable outbox and webhook delivery: changes with the MES contract.
* ``oee/``           — ISO 22400 OEE (``compute``), stop events (``stops``: debounce, micro-stops), the
  shift calendar, OEE per batch/shift from stored data (``service``), retained on ``_mes/oee``
  (``publisher``): changes with how performance is measured.
* ``downtime/``     — stop reasons (operator or PLC tag) from a configured hierarchy and the loss buckets
  per batch/shift: changes with how plants explain stops.
* ``context/``       — batch and work-order context asserted by plant apps, its timeline and start-up
  reconciliation: changes with how batches are declared.
* ``episodes/``      — quality episodes (stretches of STALE/BAD data) stored with their batch.
* ``orders/``        — production orders from the ERP: intake rules, the order store, the start of a
  batch through the signed command path: changes with the ERP's order contract.
* ``genealogy/``     — material lots consumed and produced by batches, splits, merges and trace queries:
  changes with how lots are tracked.
* ``alarms/``        — OPC UA condition alarms relayed by the edge: the journal with batch and phase,
  ``_alarms/<cell>/_conditions``, exception and hold rules, shelving, the signed release of a hold.
* ``commands/``      — the request side of writes to the plant (allowlist, signatures, audit, results).
* ``status/``        — what the adapter says about itself and the lines: data completeness, the
  ``_mes/status`` publisher, the dashboard's live feed, per-node tallies, Prometheus metrics.
* ``config/``        — the configuration files: ``application`` (the whole ``adapter.yaml``) and
  ``mes`` (lines, counters, states, confirmations); the host's own settings stay in ``host/config``.
* ``api/``           — the REST API and FastAPI app; handlers see the service only through
  :class:`~mes_adapter.service_api.ServiceApi`.

Top-level modules are shared vocabulary or the composition root: ``service`` (wires every part and
owns their lifetime), ``service_api`` (what the API may ask of it), ``auth`` (API tokens and roles),
``errors``, ``lines`` (line keys), ``sqlite``, ``timefmt``.
"""
