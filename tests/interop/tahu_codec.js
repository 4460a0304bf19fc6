#!/usr/bin/env node
// Encode/decode Sparkplug B payloads with Eclipse Tahu's JavaScript codec (npm sparkplug-payload),
// for tests/sparkplug/test_tahu_interop.py: an implementation we did not write checks ours.
//
// stdin:  {"op": "encode", "payloads": [<Tahu JS payload object>, ...]}
//      or {"op": "decode", "payloads": ["<base64 protobuf>", ...]}
//      or {"op": "decodeData", "payloads": [{"payload": "<base64>", "datatypes": {"<alias>": <datatype>}}, ...]}
//         DATA as a birth-aware consumer built on Tahu's codec reads it: DATA metrics carry an alias
//         and no datatype (tck-id-payloads-metric-datatype-not-req), so each metric without one gets
//         its datatype from the birth (the map) before Tahu's decodePayload, which needs it.
// stdout: {"results": [<base64> | <decoded object> | {"$error": "<message>"}, ...]}
//
// JSON cannot carry 64-bit integers, bytes or non-finite floats, so both directions use tags:
//   {"$long": "<decimal>"}   a Long (input: negative -> signed, else unsigned)
//   {"$bytes": "<base64>"}   a Buffer / Uint8Array
//   {"$float": "NaN" | "Infinity" | "-Infinity"}
"use strict";

const Long = require("long");
const sparkplug = require("sparkplug-payload").get("spBv1.0");
const ProtoPayload = require("sparkplug-payload/lib/sparkplugPayloadProto").org.eclipse.tahu.protobuf.Payload;

function withBirthTypes(item) {
  const message = ProtoPayload.decode(Buffer.from(item.payload, "base64"));
  for (const metric of message.metrics) {
    if (!metric.datatype && metric.alias != null) metric.datatype = item.datatypes[metric.alias.toString()] || 0;
  }
  return ProtoPayload.encode(message).finish();
}

function revive(value) {
  if (Array.isArray(value)) return value.map(revive);
  if (value !== null && typeof value === "object") {
    if ("$long" in value) {
      const text = value.$long;
      return Long.fromString(text, !text.startsWith("-"));
    }
    if ("$bytes" in value) return Buffer.from(value.$bytes, "base64");
    if ("$float" in value) return Number(value.$float);
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = revive(v);
    return out;
  }
  return value;
}

function tag(value) {
  if (Long.isLong(value)) return { $long: value.toString() };
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString("base64") };
  if (typeof value === "number" && !Number.isFinite(value)) return { $float: String(value) };
  if (Array.isArray(value)) return value.map(tag);
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = tag(v);
    return out;
  }
  return value;
}

function run(request) {
  return request.payloads.map((item) => {
    try {
      if (request.op === "encode") {
        return Buffer.from(sparkplug.encodePayload(revive(item))).toString("base64");
      }
      if (request.op === "decodeData") {
        return tag(sparkplug.decodePayload(withBirthTypes(item)));
      }
      if (request.op === "decode") {
        return tag(sparkplug.decodePayload(Buffer.from(item, "base64")));
      }
      throw new Error(`unknown op ${request.op}`);
    } catch (err) {
      return { $error: String(err && err.message ? err.message : err) };
    }
  });
}

const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  process.stdout.write(JSON.stringify({ results: run(request) }));
});
