"""The edge's OPC UA client side: everything that talks to an OPC UA server for telemetry.

* :mod:`edge_node.opcua.connection`: :class:`OpcUaConnection`, the one connection supervisor
  (reconnect loop, bounded connect, watchdog, backoff, cancellation rules) that the source and
  the command writer (:mod:`edge_node.commands.opcua_writer`) both use;
* :mod:`edge_node.opcua.security`: security policy, certificates and the asyncua client built
  from an endpoint's config;
* :mod:`edge_node.opcua.source`: :class:`OpcUaSource`, subscriptions feeding the validators and
  the Sparkplug client;
* :mod:`edge_node.opcua.browse`: ``uns edge browse``, a server walked into a starter tag map.

The loggers keep the names the modules had before this package (``edge_node.opcua_source``,
``edge_node.opcua_connection``, ``edge_node.opcua_security``, ``edge_node.browse``): log filters
and alerts use them. Nothing is re-exported here: import from the module that owns the name.
"""
