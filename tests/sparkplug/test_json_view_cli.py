"""payload_to_json and ``uns decode`` (run as a real subprocess, as an operator would)."""

from __future__ import annotations

import base64
import json
import math
import subprocess
from pathlib import Path

import pytest

from uns.sparkplug.codec import decode_payload, encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.json_view import payload_to_json
from uns.sparkplug.model import DataSet, MetaData, Metric, Parameter, Payload, PropertyValue, Template
from uns.sparkplug.topic import MessageType

TS = 1_700_000_000_000
UNS = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "uns"

BIRTH = Payload([
    Metric("bdSeq", 3, DataType.Int64, timestamp=TS),
    Metric("Temp", -12, DataType.Int32, alias=1, timestamp=TS,
           properties={"Quality": PropertyValue(DataType.Int32, 500)}),
    Metric("Nan", math.nan, DataType.Double, alias=2, timestamp=TS),
    Metric("Blob", b"\x00\xff", DataType.File, alias=3, timestamp=TS, metadata=MetaData(file_name="a.bin")),
    Metric("Table", DataSet(["a", "b"], [DataType.Int8, DataType.String], [[-1, None]]), DataType.DataSet,
           alias=4, timestamp=TS),
    Metric("T", Template(template_ref="Def", parameters=[Parameter("p", DataType.Float, math.inf)]),
           DataType.Template, alias=5, timestamp=TS),
], TS, 0)


def test_payload_to_json_is_strict_json() -> None:
    view = payload_to_json(decode_payload(encode_payload(BIRTH, MessageType.NBIRTH), MessageType.NBIRTH))
    json.dumps(view, allow_nan=False)
    temp, nan, blob, table, tmpl = view["metrics"][1:]
    assert temp == {"name": "Temp", "alias": 1, "datatype": "Int32", "timestamp": TS, "value": -12,
                    "properties": {"Quality": {"type": "Int32", "value": 500}}}
    assert nan["value"] == "NaN"
    assert blob["value"] == base64.b64encode(b"\x00\xff").decode() and blob["metadata"] == {"file_name": "a.bin"}
    assert table["value"] == {"columns": ["a", "b"], "types": ["Int8", "String"], "rows": [[-1, None]]}
    assert tmpl["value"]["parameters"] == [{"name": "p", "type": "Float", "value": "Infinity"}]
    assert tmpl["value"]["template_ref"] == "Def" and tmpl["value"]["is_definition"] is False


def _uns(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(UNS), "decode", *args], input=stdin, capture_output=True, timeout=60)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("decode")
    out = {"nbirth": tmp / "nbirth.bin", "ndata": tmp / "ndata.bin", "dbirth": tmp / "dbirth.bin",
           "ddata": tmp / "ddata.bin"}
    out["nbirth"].write_bytes(encode_payload(BIRTH, MessageType.NBIRTH))
    out["ndata"].write_bytes(encode_payload(Payload([Metric("Temp", -13, DataType.Int32, alias=1, timestamp=TS)],
                                                    TS, 1), MessageType.NDATA))
    out["dbirth"].write_bytes(encode_payload(Payload([Metric("Speed", -2, DataType.Int16, alias=9, timestamp=TS)],
                                                     TS, 2), MessageType.DBIRTH))
    out["ddata"].write_bytes(encode_payload(Payload([Metric("Speed", -3, DataType.Int16, alias=9, timestamp=TS)],
                                                    TS, 3), MessageType.DDATA))
    return out


def test_decode_birth_file(files: dict[str, Path]) -> None:
    result = _uns(str(files["nbirth"]), "--topic", "spBv1.0/g/NBIRTH/e")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["metrics"][1]["value"] == -12


def test_decode_stdin_and_type(files: dict[str, Path]) -> None:
    result = _uns("-", "--type", "NBIRTH", stdin=files["nbirth"].read_bytes())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["seq"] == 0


def test_decode_data_with_births(files: dict[str, Path]) -> None:
    result = _uns(str(files["ndata"]), "--topic", "spBv1.0/g/NDATA/e", "--birth", str(files["nbirth"]))
    metric = json.loads(result.stdout)["metrics"][0]
    assert (metric["name"], metric["datatype"], metric["value"]) == ("Temp", "Int32", -13)
    result = _uns(str(files["ddata"]), "--topic", "spBv1.0/g/DDATA/e/d", "--birth", str(files["nbirth"]),
                  "--birth", str(files["dbirth"]))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["metrics"][0]["value"] == -3


def test_decode_data_generic_without_births(files: dict[str, Path]) -> None:
    result = _uns(str(files["ndata"]))
    assert result.returncode == 0
    assert json.loads(result.stdout)["metrics"][0]["value"] == 2**32 - 13  # no birth: raw unsigned


def test_decode_state(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b'{"online":true,"timestamp":5}')
    result = _uns(str(path), "--topic", "spBv1.0/STATE/host")
    assert json.loads(result.stdout) == {"online": True, "timestamp": 5}


@pytest.mark.parametrize(("args", "stdin", "needle"), [
    (["-"], b"\xff\xff\xff\xff garbage", "MalformedPayloadError"),
    (["/nonexistent/file.bin"], None, "No such file"),
    (["-", "--topic", "spBv1.0/g/BOGUS/e"], b"", "InvalidTopicError"),
    (["-", "--type", "NOPE"], b"", "--type"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], stdin: bytes | None, needle: str) -> None:
    result = _uns(*args, stdin=stdin)
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_alias_with_births_is_exit_2(files: dict[str, Path]) -> None:
    result = _uns(str(files["ddata"]), "--topic", "spBv1.0/g/NDATA/e", "--birth", str(files["nbirth"]))
    assert result.returncode == 2 and "UnknownAliasError" in result.stderr and "alias 9" in result.stderr
