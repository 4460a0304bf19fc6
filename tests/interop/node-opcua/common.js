// Shared start-up of the node-opcua interop servers: argv <port> <pki dir>, a self-signed server
// certificate accepting any client, the standard nodeset, and the "READY ..." line the tests wait for.
"use strict";
const path = require("path");
const { OPCUAServer } = require("node-opcua-server");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const { nodesets } = require("node-opcua-nodesets");

// build(addressSpace, namespace) adds the nodes and may return a function called on shutdown.
async function serve(resourcePath, productName, build) {
  const port = parseInt(process.argv[2], 10);
  const pki = process.argv[3];
  const serverCertificateManager = new OPCUACertificateManager({
    rootFolder: path.join(pki, "server"), automaticallyAcceptUnknownCertificate: true,
  });
  const server = new OPCUAServer({
    port, hostname: "127.0.0.1", resourcePath, nodeset_filename: [nodesets.standard],
    serverCertificateManager, buildInfo: { productName, buildNumber: "1" },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.getOwnNamespace();
  const cleanup = build(addressSpace, ns) || (() => {});
  await server.start();
  const uri = addressSpace.getNamespaceUri(ns.index);
  process.stdout.write(`READY ${server.getEndpointUrl()} ${ns.index} ${uri}\n`);
  const stop = async () => { cleanup(); await server.shutdown(0); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

function run(resourcePath, productName, build) {
  serve(resourcePath, productName, build).catch((err) => {
    process.stderr.write(`FAILED ${err && err.stack || err}\n`);
    process.exit(1);
  });
}

module.exports = { run };
