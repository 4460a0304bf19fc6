"""A structure type changed in place on the server (a PLC download changed a UDT, same DataType
node id) decodes with its new fields after the edge reconnects (edge_node.opcua.structures
``_forget_class``).

asyncua keeps the classes it generates in one process-wide registry (``asyncua.ua``). An
in-process test server registers its own class there and hides the edge's mistake, so the server
here is a separate process: the edge's process has only the class it generated itself, exactly
as in a plant. Without dropping it, the second read decodes with the first definition's fields.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

from asyncua import Client, ua

from edge_node.opcua.structures import read_structure_types
from tests.support.net import free_port

NS_URI = "urn:uns-hub:test:udt-change"

_SERVER = textwrap.dedent('''
    import asyncio, sys
    from asyncua import Server, ua
    from asyncua.common.structures104 import new_struct_field
    from asyncua.common.structures104 import create_data_type, create_encoding

    async def main(port, fields):
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
        ns = await server.register_namespace(sys.argv[3])
        dtype = await create_data_type(server.nodes.base_structure_type, ua.NodeId("PlcUdt", ns),
                                       ua.QualifiedName("PlcUdt", ns), None)
        encoding = await create_encoding(dtype, ua.NodeId("PlcUdt/Binary", ns), ua.QualifiedName("Default Binary", 0))
        definition = ua.StructureDefinition()
        definition.BaseDataType = server.nodes.base_structure_type.nodeid
        definition.StructureType = ua.StructureType.Structure
        definition.DefaultEncodingId = encoding.nodeid
        definition.Fields = [new_struct_field(name, ua.VariantType.Double) for name in fields]
        await dtype.write_data_type_definition(definition)
        await server.load_data_type_definitions()
        value = getattr(ua, "PlcUdt")(**{name: float(i + 1) for i, name in enumerate(fields)})
        await server.nodes.objects.add_variable(ua.NodeId("Udt", ns), "Udt", value, datatype=dtype.nodeid)
        async with server:
            print("ready", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main(int(sys.argv[1]), sys.argv[2].split(",")))
''')


@contextmanager
def _server(port: int, fields: str) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(port), fields, NS_URI],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready", or "" when the server died (its stderr says why)
        assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
        yield f"opc.tcp://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def _read_udt(endpoint: str) -> dict[str, float]:
    async with Client(endpoint, timeout=10) as client:
        ns = await client.get_namespace_index(NS_URI)
        node = ua.NodeId("Udt", ns)
        await read_structure_types(client, [node])  # what the edge does at each (re)connect
        value = await client.get_node(node).read_value()
        return {name: getattr(value, name) for name in value.__dataclass_fields__}


def test_a_udt_changed_in_place_decodes_with_its_new_fields_after_a_reconnect() -> None:
    port = free_port()
    with _server(port, "Speed,Temp") as endpoint:
        assert asyncio.run(_read_udt(endpoint)) == {"Speed": 1.0, "Temp": 2.0}
    with _server(port, "Speed,Temp,Pressure") as endpoint:  # the PLC download: one more field
        assert asyncio.run(_read_udt(endpoint)) == {"Speed": 1.0, "Temp": 2.0, "Pressure": 3.0}
