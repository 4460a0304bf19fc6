"""Simulated production line: a PackML-style line model (no I/O) served by an asyncua OPC UA server.

Public API: ``simulator.config.SimulatorConfig``, ``simulator.server.SimulatedLineServer``,
``simulator.model.LineModel``, ``simulator.catalog.tag_catalog`` and ``simulator.client`` (drive a
running simulator over OPC UA). Started from the CLI with ``uns sim run``.
"""
