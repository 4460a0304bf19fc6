"""``uns history``: a tag's history from a running adapter's REST API, as CSV (or JSON).

Why through the REST API and not by opening the store: the historian may be PostgreSQL or on another
machine, the API checks who asks (a viewer token is enough), and a second process opening the SQLite
day files while the adapter writes them would take its locks. The answer is the API's, unchanged.

Exit codes: 0 answered, 1 the API refused (its reason is printed: bad range, unknown tag, too many
points), 2 the adapter could not be reached.

Times are epoch milliseconds or ISO 8601 (``2026-12-02T08:00:00Z``; no zone means UTC).
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

history_app = typer.Typer(name="history", no_args_is_help=True, help="Read a tag's history (raw, aggregates, as-of, "
                                                                   "gaps, per batch) from the adapter; CSV export.")

_URL = typer.Option("http://127.0.0.1:8080", "--url", envvar="UNS_ADAPTER_URL", help="the adapter's base URL")
_TOKEN = typer.Option(..., "--token", envvar="UNS_TOKEN", help="an API token (viewer or above)")
_GROUP = typer.Option(..., "--group", help="Sparkplug group id")
_EDGE = typer.Option(..., "--edge", help="edge node id")
_DEVICE = typer.Option(None, "--device", help="device id (omit for a node metric)")
_METRIC = typer.Option(..., "--metric", help="metric name")
_START = typer.Option(..., "--start", help="range start (inclusive): epoch ms or ISO 8601")
_END = typer.Option(..., "--end", help="range end (exclusive): epoch ms or ISO 8601")
_OUT = typer.Option(None, "--out", "-o", help="write the CSV here (default: standard output)")
_JSON = typer.Option(False, "--json", help="print the API's JSON answer instead of CSV")

SAMPLE_COLUMNS = ["source_ms", "source_time", "receipt_ms", "value", "quality", "status_code", "is_historical"]


def parse_time(text: str) -> int:
    """Epoch ms, or ISO 8601 (UTC when no zone is given), as epoch ms."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither epoch milliseconds nor an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _call(url: str, token: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
    import httpx

    query = {k: v for k, v in params.items() if v is not None}
    try:
        response = httpx.get(f"{url.rstrip('/')}/api/history/{path}", params=query,
                             headers={"Authorization": f"Bearer {token}"}, timeout=60)
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach the adapter at {url}: {exc}", err=True)
        raise typer.Exit(2) from None
    if response.status_code != 200:
        try:
            body = response.json()
            why = f"{body.get('detail')} ({body.get('reason')})"
        except ValueError:
            why = response.text[:500]
        typer.echo(f"error: {response.status_code}: {why}", err=True)
        raise typer.Exit(1)
    answer: dict[str, Any] = response.json()
    return answer


def _write(rows: list[dict[str, Any]], columns: list[str], out: Path | None) -> None:
    handle = out.open("w", newline="", encoding="utf-8") if out is not None else sys.stdout
    try:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    finally:
        if out is not None:
            handle.close()


def _samples(values: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [{**v, **(extra or {}), "source_time": _iso(v["source_ms"])} for v in values]


def _tag(group: str, edge: str, device: str | None, metric: str) -> dict[str, Any]:
    return {"group": group, "edge": edge, "device": device, "metric": metric}


def _emit(answer: dict[str, Any], as_json: bool, rows: list[dict[str, Any]], columns: list[str],
          out: Path | None) -> None:
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
    else:
        _write(rows, columns, out)


@history_app.command("raw")
def raw_command(group: str = _GROUP, edge: str = _EDGE, device: str | None = _DEVICE, metric: str = _METRIC,
                start: str = _START, end: str = _END,
                max_points: int | None = typer.Option(None, "--max-points", help="refuse more than this many"),
                url: str = _URL, token: str = _TOKEN, out: Path | None = _OUT, as_json: bool = _JSON) -> None:
    """Every value of the tag in [start, end), with its quality, status code and receipt time."""
    answer = _call(url, token, "raw", {**_tag(group, edge, device, metric), "start": parse_time(start),
                                       "end": parse_time(end), "max_points": max_points})
    _emit(answer, as_json, _samples(answer["values"]), SAMPLE_COLUMNS, out)


@history_app.command("aggregates")
def aggregates_command(group: str = _GROUP, edge: str = _EDGE, device: str | None = _DEVICE, metric: str = _METRIC,
                       start: str = _START, end: str = _END,
                       interval: int = typer.Option(..., "--interval", help="ms; start and end its multiples"),
                       url: str = _URL, token: str = _TOKEN, out: Path | None = _OUT, as_json: bool = _JSON) -> None:
    """Per interval: count, min, max, first, last, time-weighted average, samples."""
    answer = _call(url, token, "aggregates", {**_tag(group, edge, device, metric), "start": parse_time(start),
                                              "end": parse_time(end), "interval": interval})
    rows = [{**a, "start_time": _iso(a["start_ms"])} for a in answer["intervals"]]
    _emit(answer, as_json, rows, ["start_ms", "start_time", "end_ms", "count", "min", "max", "first", "last", "twa",
                                  "samples"], out)


@history_app.command("at")
def at_command(group: str = _GROUP, edge: str = _EDGE, device: str | None = _DEVICE, metric: str = _METRIC,
               t: str = typer.Option(..., "--at", help="the time: epoch ms or ISO 8601"),
               url: str = _URL, token: str = _TOKEN, out: Path | None = _OUT, as_json: bool = _JSON) -> None:
    """The tag's value as of a time (its last value at or before it)."""
    answer = _call(url, token, "at", {**_tag(group, edge, device, metric), "t": parse_time(t)})
    value = answer["value"]
    _emit(answer, as_json, _samples([value] if value is not None else []), SAMPLE_COLUMNS, out)


@history_app.command("gaps")
def gaps_command(group: str = _GROUP, edge: str = _EDGE, device: str | None = _DEVICE, metric: str = _METRIC,
                 start: str = _START, end: str = _END,
                 url: str = _URL, token: str = _TOKEN, out: Path | None = _OUT, as_json: bool = _JSON) -> None:
    """Where the tag had no usable value: BAD quality, or STALE (its node dead); an open gap has no end."""
    answer = _call(url, token, "gaps", {**_tag(group, edge, device, metric), "start": parse_time(start),
                                        "end": parse_time(end)})
    rows = [{**g, "start_time": _iso(g["start_ms"]), "end_time": _iso(g["end_ms"])} for g in answer["gaps"]]
    _emit(answer, as_json, rows, ["start_ms", "start_time", "end_ms", "end_time", "quality"], out)


@history_app.command("batch")
def batch_command(group: str = _GROUP, edge: str = _EDGE, device: str | None = _DEVICE, metric: str = _METRIC,
                  line: str = typer.Option(..., "--line", help="the line, e.g. acme/plant1/packaging/line1"),
                  batch_id: str = typer.Option(..., "--batch", help="the batch id"),
                  url: str = _URL, token: str = _TOKEN, out: Path | None = _OUT, as_json: bool = _JSON) -> None:
    """The tag's values while a batch ran, one window per phase segment (phase column in the CSV)."""
    answer = _call(url, token, "batch", {**_tag(group, edge, device, metric), "line": line, "batch_id": batch_id})
    rows = [row for w in answer["windows"] for row in _samples(w["values"], {"phase": w["phase"] or ""})]
    _emit(answer, as_json, rows, ["phase", *SAMPLE_COLUMNS], out)


def register(app: typer.Typer) -> None:
    app.add_typer(history_app)
