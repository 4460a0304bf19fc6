"""Configuration models of the adapter, one module per thing configured.

:mod:`.application` is the whole ``adapter.yaml`` (HTTP, tokens, data directory, audit, and where
each part's own settings live); :mod:`.mes` configures the MES core (lines, counters, state map,
confirmations, webhook, shift calendar). The Sparkplug host's :class:`~mes_adapter.host.HostConfig`
stays in :mod:`mes_adapter.host.config`: the host runs on its own too (``uns host``) and its
settings validate against the tracker's rebirth causes.
"""
