// An Eclipse Tahu edge node (npm "sparkplug-client", code we did not write) for host interop tests.
//
//   node edge.js <host> <port> [seconds=30] [group] [edge] [device] [templates]
//
// Connects to the broker, publishes NBIRTH, DBIRTH and one DDATA with several datatypes, prints
// "DATA_SENT" on stdout, answers NCMD Node Control/Rebirth with new births ("REBIRTH" on stdout),
// and exits when stdin closes or after <seconds>. With "templates" as the 8th argument the NBIRTH
// also defines a template "Motor" (Tahu's own convention: the definition metric is named after the
// template), the DBIRTH carries an instance "Press/Motor", and the DDATA one changed member of it.
"use strict";

const sparkplug = require("sparkplug-client");

const [host, port] = [process.argv[2], process.argv[3]];
const seconds = Number(process.argv[4] || 30);
const groupId = process.argv[5] || "acme:plant1";
const edgeNode = process.argv[6] || "assembly:line2";
const deviceId = process.argv[7] || "press1";
const withTemplates = process.argv[8] === "templates";

function motor(isDefinition, members) {
  return { version: "v1", isDefinition, templateRef: isDefinition ? undefined : "Motor", metrics: members,
           parameters: [] };
}

const client = sparkplug.newClient({
  serverUrl: `tcp://${host}:${port}`,
  username: "",
  password: "",
  groupId,
  edgeNode,
  clientId: `tahu-edge-${process.pid}`,
  version: "spBv1.0",
  publishDeath: true,
});

function nodeBirth() {
  const ts = Date.now();
  return {
    timestamp: ts,
    metrics: [
      { name: "Node Control/Rebirth", type: "Boolean", value: false, timestamp: ts },
      { name: "Line/Mode", type: "String", value: "AUTO", timestamp: ts },
      { name: "Line/Uptime", type: "Int64", value: 3600, timestamp: ts },
      ...(withTemplates ? [{ name: "Motor", type: "Template", timestamp: ts, value: motor(true, [
        { name: "Speed", type: "Double", value: 0 },
        { name: "Running", type: "Boolean", value: false },
        { name: "Mode", type: "String", value: "" },
        { name: "Starts", type: "UInt32", value: 0 },
      ]) }] : []),
    ],
  };
}

function deviceBirth() {
  const ts = Date.now();
  return {
    timestamp: ts,
    metrics: [
      { name: "Press/Force", type: "Double", value: 1234.5, timestamp: ts },
      { name: "Press/Temp", type: "Float", value: 36.5, timestamp: ts },
      { name: "Press/Step", type: "Int8", value: -3, timestamp: ts },
      { name: "Press/Delta", type: "Int32", value: -100000, timestamp: ts },
      { name: "Press/Strokes", type: "UInt32", value: 4000000000, timestamp: ts },
      { name: "Press/Open", type: "Boolean", value: true, timestamp: ts },
      { name: "Press/Tool", type: "String", value: "T-7", timestamp: ts },
      ...(withTemplates ? [{ name: "Press/Motor", type: "Template", timestamp: ts, value: motor(false, [
        { name: "Speed", type: "Double", value: 1450.5 },
        { name: "Running", type: "Boolean", value: true },
        { name: "Mode", type: "String", value: "AUTO" },
        { name: "Starts", type: "UInt32", value: 4000000000 },
      ]) }] : []),
    ],
  };
}

function deviceData() {
  const ts = Date.now();
  return {
    timestamp: ts,
    metrics: [
      { name: "Press/Force", type: "Double", value: 2345.25, timestamp: ts },
      { name: "Press/Step", type: "Int8", value: -7, timestamp: ts },
      { name: "Press/Strokes", type: "UInt32", value: 4000000001, timestamp: ts },
      { name: "Press/Open", type: "Boolean", value: false, timestamp: ts },
      { name: "Press/Tool", type: "String", value: "T-8", timestamp: ts },
      ...(withTemplates ? [{ name: "Press/Motor", type: "Template", timestamp: ts, value: motor(false, [
        { name: "Speed", type: "Double", value: 1500.25 },
      ]) }] : []),
    ],
  };
}

function births() {
  client.publishNodeBirth(nodeBirth());
  client.publishDeviceBirth(deviceId, deviceBirth());
}

let sent = false;
client.on("birth", () => {
  births();
  if (!sent) {
    sent = true;
    setTimeout(() => {
      client.publishDeviceData(deviceId, deviceData());
      console.log("DATA_SENT");
    }, 200);
  }
});

client.on("ncmd", (payload) => {
  for (const metric of payload.metrics || []) {
    if (metric.name === "Node Control/Rebirth" && metric.value === true) {
      births();
      console.log("REBIRTH");
    }
  }
});

client.on("error", (err) => {
  console.error(`ERROR ${err}`);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  try {
    client.stop();
  } finally {
    setTimeout(() => process.exit(0), 200);
  }
}

process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
setTimeout(stop, seconds * 1000);
