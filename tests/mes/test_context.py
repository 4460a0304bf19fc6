"""Context assertions: ordering, duplicates, history, active_at for late data, retained JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from mes_adapter.context import AssertionOutcome, ContextAssertion, ContextService, ContextStore
from mes_adapter.context.service import CLEAR_ASSERTER
from mes_adapter.errors import ContextRejectedError, InvalidContextPayloadError, InvalidLineError

LINE = "acme/plant1/packaging/line2"
H = 3_600_000


def ctx(seq: int, since: int, batch: str | None = "B-1", **kw: object) -> ContextAssertion:
    return ContextAssertion(line=LINE, seq=seq, since_ms=since, batch_id=batch,
                            work_order_id=kw.pop("wo", "WO-1"), asserted_by="mes", **kw)  # type: ignore[arg-type]


@pytest.fixture
def service(tmp_path: Path) -> ContextService:
    return ContextService(ContextStore(tmp_path / "ctx.sqlite"), clock=lambda: 99 * H)


def test_accept_duplicate_and_refuse(service: ContextService) -> None:
    assert service.assert_context(ctx(1, 0)) is AssertionOutcome.ACCEPTED
    assert service.assert_context(ctx(1, 0)) is AssertionOutcome.DUPLICATE
    with pytest.raises(ContextRejectedError, match="different content"):
        service.assert_context(ctx(1, 0, batch="B-other"))
    assert service.assert_context(ctx(5, H, batch="B-2")) is AssertionOutcome.ACCEPTED
    with pytest.raises(ContextRejectedError, match="greater than the last accepted seq 5") as err:
        service.assert_context(ctx(3, 2 * H, batch="B-3"))
    assert err.value.seq == 3 and err.value.line == LINE
    # an old seq re-delivered unchanged is still just a duplicate
    assert service.assert_context(ctx(1, 0)) is AssertionOutcome.DUPLICATE
    assert [a.seq for a, _ in service.history(LINE)] == [5, 1]


def test_active_at_by_source_time(service: ContextService) -> None:
    service.assert_context(ctx(1, 6 * H, batch="B-1"))
    service.assert_context(ctx(2, 8 * H, batch="B-1", phase="fill"))
    service.assert_context(ctx(3, 10 * H, batch="B-1", ended=True))
    service.assert_context(ctx(4, 11 * H, batch="B-2"))
    assert service.active_at(LINE, 6 * H - 1) is None
    assert service.active_at(LINE, 6 * H).batch_id == "B-1"  # type: ignore[union-attr]
    assert service.active_at(LINE, 9 * H).phase == "fill"  # type: ignore[union-attr]
    assert service.active_at(LINE, 10 * H) is None  # ended at 10:00, exclusive
    assert service.active_at(LINE, 10 * H + 30 * 60_000) is None
    assert service.active_at(LINE, 12 * H).batch_id == "B-2"  # type: ignore[union-attr]
    window = service.batch_window(LINE, "B-1")
    assert window is not None and (window.start_ms, window.end_ms) == (6 * H, 10 * H)
    assert len(window.segments) == 2
    assert service.batch_window(LINE, "B-2").end_ms is None  # type: ignore[union-attr]
    assert [w.batch_id for w in service.batch_windows(LINE, 0, 24 * H)] == ["B-1", "B-2"]
    assert service.active_at("acme/plant1/packaging/other", 9 * H) is None


def test_late_assertion_into_the_past_and_correction(service: ContextService) -> None:
    service.assert_context(ctx(1, 6 * H, batch="B-1"))
    service.assert_context(ctx(2, 10 * H, batch="B-2"))
    # the MES learns late that B-1 ended at 09:00 and a cleaning phase ran until B-2
    service.assert_context(ctx(3, 9 * H, batch="B-1", ended=True))
    assert service.active_at(LINE, 9 * H + 1) is None
    assert service.active_at(LINE, 10 * H).batch_id == "B-2"  # type: ignore[union-attr]
    # correcting a change point: same since_ms, higher seq wins
    service.assert_context(ctx(4, 10 * H, batch="B-2", wo="WO-corrected"))
    assert service.active_at(LINE, 11 * H).work_order_id == "WO-corrected"  # type: ignore[union-attr]
    assert len(service.batch_window(LINE, "B-2").segments) == 1  # type: ignore[union-attr]


def test_end_must_match_active_batch(service: ContextService) -> None:
    service.assert_context(ctx(1, H, batch="B-1"))
    with pytest.raises(ContextRejectedError, match="ends batch 'B-9' but batch 'B-1' is active"):
        service.assert_context(ctx(2, 2 * H, batch="B-9", ended=True))
    with pytest.raises(ContextRejectedError, match="but no batch is active"):
        service.assert_context(ctx(2, 0, batch="B-1", ended=True))
    # an end without a batch id ends whatever runs
    assert service.assert_context(ctx(2, 2 * H, batch=None, ended=True)) is AssertionOutcome.ACCEPTED


def test_history_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "ctx.sqlite"
    first = ContextService(ContextStore(path))
    first.assert_context(ctx(1, 6 * H, batch="B-1"))
    first.assert_context(ctx(2, 7 * H, batch="B-2"))
    second = ContextService(ContextStore(path))
    assert second.active_at(LINE, 6 * H + 5).batch_id == "B-1"  # type: ignore[union-attr]
    assert second.last_seq(LINE) == 2
    assert second.assert_context(ctx(2, 7 * H, batch="B-2")) is AssertionOutcome.DUPLICATE


def test_retained_payload_roundtrip_and_clear(service: ContextService) -> None:
    a = ctx(7, 6 * H, batch="B-2024-0117", product_id="SKU-12", phase="fill", target_quantity=10000)
    payload = a.to_payload()
    assert b'"line"' not in payload and b"null" not in payload
    assert ContextAssertion.from_payload(LINE, payload) == a
    assert service.handle_retained(LINE, payload) is AssertionOutcome.ACCEPTED
    assert service.handle_retained(LINE, payload) is AssertionOutcome.DUPLICATE  # retained echo
    assert service.handle_retained(LINE, b"") is AssertionOutcome.ACCEPTED  # clear at receive time
    end = service.current(LINE)
    assert end is not None and end.ended and end.seq == 8 and end.asserted_by == CLEAR_ASSERTER
    assert end.since_ms == 99 * H and end.batch_id == "B-2024-0117"
    assert service.active_at(LINE, 99 * H) is None
    assert service.handle_retained(LINE, b"") is None  # nothing left to clear


@pytest.mark.parametrize("payload, message", [
    (b"{not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"batch_id": "B-1", "since_ms": 0}', "seq"),
    (b'{"seq": 1, "since_ms": 0}', "needs a batch_id"),
    (b'{"seq": 1, "since_ms": 0, "batch_id": "B", "line": "x/y/z/w"}', "published on"),
    (b'{"seq": 1, "since_ms": 0, "batch_id": "B", "colour": "red"}', "colour"),
])
def test_bad_payloads_are_specific(payload: bytes, message: str) -> None:
    with pytest.raises(InvalidContextPayloadError, match=message):
        ContextAssertion.from_payload(LINE, payload)


def test_line_validation() -> None:
    with pytest.raises(InvalidLineError):
        ContextAssertion.from_payload("acme/plant1/line2", b'{"seq":1,"since_ms":0,"batch_id":"B"}')
    with pytest.raises(ValueError):
        ContextAssertion(line="acme/plant 1/a/b", seq=1, since_ms=0, batch_id="B")


def test_context_topic() -> None:
    from mes_adapter.context import context_topic
    from uns.isa95 import NamespaceMapping

    assert context_topic(NamespaceMapping(), LINE) == "acme/plant1/packaging/line2/_context/batch"
    mapping = NamespaceMapping(mirror_root="uns")
    line, segment, rest = mapping.parse_line_topic(context_topic(mapping, LINE))
    assert (line.topic, segment, rest) == (LINE, "_context", ["batch"])
