"""Commands to the plant floor: allowlist, signatures, wire format, and the request client.

The guarded path every PLC write takes (issue "Commands to the plant floor"): a request
(:mod:`.model`) signed by its users (:mod:`.signing`), judged by the allowlist
(:mod:`.allowlist`, :mod:`.checker`) on the host and again on the edge, carried as a DCMD/NCMD
(:mod:`.wire`), and recorded step by step in the audit chain (:mod:`uns.audit`,
:mod:`.audit_events`). The OPC UA executor (edge_node) and the REST request side
(mes_adapter) are I/O shells around these modules.
"""
