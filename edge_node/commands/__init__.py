"""Commands to the plant floor, edge side: the last line of defence before a PLC write.

* :mod:`edge_node.commands.executor`: :class:`CommandExecutor`, the async shell (intake, one
  ordered queue per OPC UA endpoint, check, write, read back);
* :mod:`edge_node.commands.logic`: what the reads and checks mean (no I/O);
* :mod:`edge_node.commands.reporting`: every audit record, result and journal entry about a
  command;
* :mod:`edge_node.commands.edge_client`: :class:`EdgeClient`, what this package needs from the
  Sparkplug client (a protocol; the client is not imported);
* :mod:`edge_node.commands.journal`: the durable queue and the ledger of command ids taken in;
* :mod:`edge_node.commands.recovery`: what a restart does with what the last run left open;
* :mod:`edge_node.commands.rejects`: what is said about a command the session could not decode;
* :mod:`edge_node.commands.opcua_writer`: the dedicated OPC UA write session per endpoint;
* :mod:`edge_node.commands.wiring`: composing all of it from the edge config.

The loggers keep the names the modules had before this package (``edge_node.executor``, also for
:mod:`edge_node.commands.reporting`; ``edge_node.opcua_writer``; ``edge_node.command_wiring``):
log filters and alerts use them. Nothing is re-exported here: import from the module that owns
the name.
"""
