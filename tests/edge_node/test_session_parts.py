"""The edge session's parts on their own: the delivery window and the message builders (no session)."""

from __future__ import annotations

import pytest

from edge_node.model import MetricDefinition, MetricUpdate
from edge_node.session.delivery import DeliveryWindow
from edge_node.session.messages import BirthEncodeError, MetricInfo, birth_metrics, chunk_values, encode_birth
from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.topic import MessageType


def update(name: str, value: object, ts: int, row: int | None = None) -> MetricUpdate:
    return MetricUpdate("Filler", name, value, ts, seq_id=row)


def test_the_window_confirms_in_order_and_gives_back_what_was_never_confirmed() -> None:
    """Rule 10: a confirmation covers its message and every one before it; stored rows are
    delivered only when confirmed; on a lost connection live values go back to the store."""
    window = DeliveryWindow()
    live = [update("Count", 1, 10), update("Count", 2, 11)]
    window.add_live(5, live)
    window.add_stored(6, [update("Count", 0, 1, row=10), update("Count", 0, 2, row=11)])
    window.add_live(7, [update("Count", 3, 12)])
    assert (window.values, window.rows, window.holds_row(10)) == (5, 2, True)
    assert window.confirm(99) == (0, [])  # not ours (another connection's echo, a late one)
    assert window.confirm(6) == (4, [10, 11])
    assert (window.values, window.rows, window.holds_row(10)) == (1, 0, False)
    window.add_stored(8, [update("Count", 0, 3, row=12)])
    dropped, had_rows = window.drop()
    assert dropped == [update("Count", 3, 12)] and had_rows
    assert (window.values, window.rows, window.confirm(None)) == (0, 0, (0, []))


def test_data_chunks_keep_timestamp_order_size_and_one_value_per_metric_and_timestamp() -> None:
    """Rule 7: one message never holds the same (metric, timestamp) twice, nor more than the limit."""
    a1, a2, b1, a1_again = update("A", 1, 1), update("A", 2, 2), update("B", 1, 1), update("A", 9, 1)
    assert chunk_values([a2, a1, b1, a1_again], limit=10) == [[a1, b1], [a1_again, a2]]
    assert chunk_values([a2, a1, b1], limit=2) == [[a1, b1], [a2]]


def test_a_birth_that_does_not_encode_names_every_metric_at_fault() -> None:
    infos = [MetricInfo("Filler", name, datatype, alias, MetricDefinition("Filler", name, datatype), None)
             for alias, (name, datatype) in enumerate([("Count", DataType.Int64), ("Speed", DataType.Float),
                                                      ("Label", DataType.String)], start=1)]
    current = {("Filler", "Count"): update("Count", "many", 5), ("Filler", "Speed"): update("Speed", 1e39, 5),
               ("Filler", "Label"): update("Label", "ok", 5)}
    with pytest.raises(BirthEncodeError) as caught:
        encode_birth(MessageType.DBIRTH, [], birth_metrics(infos, current, 7), 7, 1)
    assert caught.value.bad == [(("Filler", "Count"), "metric 'Count': Int64 needs an int, got str 'many'"),
                                (("Filler", "Speed"), "metric 'Speed': 1e+39 does not fit a 32-bit Float")]
    del current[("Filler", "Count")], current[("Filler", "Speed")]
    payload, count = encode_birth(MessageType.DBIRTH, [], birth_metrics(infos, current, 7), 7, 1)
    decoded = pb.Payload.FromString(payload)
    assert count == 3 and decoded.seq == 1
    # timestamp order (rule 4): the null ones are stamped with the birth's time, after Label's
    assert [(m.name, m.is_null, m.string_value, m.timestamp) for m in decoded.metrics] == [
        ("Label", False, "ok", 5), ("Count", True, "", 7), ("Speed", True, "", 7)]
