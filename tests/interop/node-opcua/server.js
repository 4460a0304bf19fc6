// A node-opcua server for the edge node interop test: Line1/Filler/{Speed,Temperature,Count} and
// Line1/State. Usage: node server.js <port> <pki dir>. Prints "READY <endpoint> <ns index> <ns uri>".
"use strict";
const { Variant, DataType } = require("node-opcua-variant");
const { run } = require("./common");

run("/UA/UnsHubInterop", "uns-hub interop", (addressSpace, ns) => {
  const line = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "Line1", nodeId: "s=Line1" });
  const filler = ns.addObject({ componentOf: line, browseName: "Filler", nodeId: "s=Line1/Filler" });
  let count = 0;
  let temperature = 20.0;
  ns.addVariable({
    componentOf: line, browseName: "State", nodeId: "s=Line1/State", dataType: "String",
    value: { get: () => new Variant({ dataType: DataType.String, value: "Execute" }) },
  });
  ns.addVariable({
    componentOf: filler, browseName: "Count", nodeId: "s=Line1/Filler/Count", dataType: "UInt32",
    value: { get: () => new Variant({ dataType: DataType.UInt32, value: count }) },
  });
  ns.addAnalogDataItem({
    componentOf: filler, browseName: "Temperature", nodeId: "s=Line1/Filler/Temperature", dataType: "Double",
    engineeringUnitsRange: { low: 0, high: 200 },
    value: { get: () => new Variant({ dataType: DataType.Double, value: temperature }) },
  });
  const timer = setInterval(() => { count += 1; temperature = 20 + (count % 50); }, 100);
  return () => clearInterval(timer);
});
