// OPC UA load server for bench/edge_pipeline.py (--source node-opcua).
//
// Why it exists: on a 2-core machine, asyncua simulators able to change 10,000 tags at 2 Hz
// take the whole machine (an asyncua server saturates near 16,000 changes/s per process, and
// four of them used 1.6 cores), so the edge node under test was starved and the
// bench measured the load generator. node-opcua (V8) serves the same load at a fraction of the
// CPU, and is an OPC UA stack we did not write.
//
// It serves exactly what the bench reads from `uns sim run --extra-tags N`: namespace
// urn:uns-hub:simulator, Double variables "s=Line1/Synthetic/TagNNNNN" whose value at update
// `step` is simulator.model.synthetic_value(index, step); every tag of one step shares the
// step's SourceTimestamp (taken before the step's writes, like the asyncua simulator).
//
// Usage: node opcua_load_server.js <port> <tags> <rate_hz> <pki dir> [line]
// Prints "READY <endpoint url> ns=<index>" once it listens; stops on SIGTERM / SIGINT.
"use strict";
const path = require("path");
const { OPCUAServer } = require("node-opcua-server");
const { Variant, DataType } = require("node-opcua-variant");
const { StatusCodes } = require("node-opcua-status-code");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const { nodesets } = require("node-opcua-nodesets");

const NAMESPACE_URI = "urn:uns-hub:simulator";

// Must stay equal to simulator.model.synthetic_value: the bench recovers the step from a value.
function syntheticValue(index, step) {
  return (((step + index * 7) % 2000) - 1000) * 0.5 + (step & 1) * 0.25;
}

function usage(message) {
  process.stderr.write(`${message}\nusage: node opcua_load_server.js <port> <tags> <rate_hz> <pki dir> [line]\n`);
  process.exit(2);
}

async function main() {
  const [portArg, tagsArg, rateArg, pki, line = "Line1"] = process.argv.slice(2);
  const port = Number.parseInt(portArg, 10);
  const tags = Number.parseInt(tagsArg, 10);
  const rateHz = Number.parseFloat(rateArg);
  if (!(port > 0 && port < 65536)) usage(`port must be 1..65535, got ${portArg}`);
  if (!(tags >= 1 && tags <= 100000)) usage(`tags must be 1..100000, got ${tagsArg}`);
  if (!(rateHz > 0 && rateHz <= 100)) usage(`rate_hz must be in (0, 100], got ${rateArg}`);
  if (!pki) usage("pki dir is required");

  const serverCertificateManager = new OPCUACertificateManager({
    rootFolder: path.join(pki, "server"), automaticallyAcceptUnknownCertificate: true,
  });
  const server = new OPCUAServer({
    port, hostname: "127.0.0.1", resourcePath: "/", nodeset_filename: [nodesets.standard],
    serverCertificateManager,
    buildInfo: { productName: "uns-hub bench load server", buildNumber: "1" },
    // the edge node creates monitored items and reads in chunks; do not make it split further
    serverCapabilities: { operationLimits: { maxMonitoredItemsPerCall: 100000, maxNodesPerRead: 100000 } },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.registerNamespace(NAMESPACE_URI);
  const lineNode = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: line, nodeId: `s=${line}` });
  const folder = ns.addObject({ componentOf: lineNode, browseName: "Synthetic", nodeId: `s=${line}/Synthetic` });

  let step = 0;
  const variables = [];
  const started = new Date();
  for (let i = 0; i < tags; i++) {
    const name = `Tag${String(i).padStart(5, "0")}`;
    const variable = ns.addVariable({
      componentOf: folder, browseName: name, nodeId: `s=${line}/Synthetic/${name}`, dataType: "Double",
      minimumSamplingInterval: 0,
    });
    variable.setValueFromSource(new Variant({ dataType: DataType.Double, value: syntheticValue(i, step) }),
      StatusCodes.Good, started);
    variables.push(variable);
  }

  const intervalMs = 1000 / rateHz;
  let nextAt = Date.now() + intervalMs;
  let timer = null;
  const tick = () => {
    step += 1;
    const now = new Date();
    for (let i = 0; i < tags; i++) {
      variables[i].setValueFromSource(new Variant({ dataType: DataType.Double, value: syntheticValue(i, step) }),
        StatusCodes.Good, now);
    }
    nextAt += intervalMs;
    if (nextAt < Date.now() - intervalMs) nextAt = Date.now(); // fell behind: skip steps, never burst
    timer = setTimeout(tick, Math.max(0, nextAt - Date.now()));
  };

  await server.start();
  process.stdout.write(`READY ${server.getEndpointUrl()} ns=${ns.index}\n`);
  timer = setTimeout(tick, intervalMs);

  const stop = async () => {
    if (timer !== null) clearTimeout(timer);
    await server.shutdown(0);
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => { process.stderr.write(`FAILED ${(err && err.stack) || err}\n`); process.exit(1); });
