// A node-opcua server for the edge node interop test: Line1/Filler/{Speed,Temperature,Count} and
// Line1/State. Usage: node server.js <port> <pki dir>. Prints "READY <endpoint> <ns index> <ns uri>".
"use strict";
const path = require("path");
const { OPCUAServer } = require("node-opcua-server");
const { Variant, DataType } = require("node-opcua-variant");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const { nodesets } = require("node-opcua-nodesets");

async function main() {
  const port = parseInt(process.argv[2], 10);
  const pki = process.argv[3];
  const serverCertificateManager = new OPCUACertificateManager({
    rootFolder: path.join(pki, "server"), automaticallyAcceptUnknownCertificate: true,
  });
  const server = new OPCUAServer({
    port, hostname: "127.0.0.1", resourcePath: "/UA/UnsHubInterop",
    nodeset_filename: [nodesets.standard], serverCertificateManager,
    buildInfo: { productName: "uns-hub interop", buildNumber: "1" },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.getOwnNamespace();
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
  await server.start();
  const uri = addressSpace.getNamespaceUri(ns.index);
  process.stdout.write(`READY ${server.getEndpointUrl()} ${ns.index} ${uri}\n`);
  const stop = async () => { clearInterval(timer); await server.shutdown(0); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => { process.stderr.write(`FAILED ${err && err.stack || err}\n`); process.exit(1); });
