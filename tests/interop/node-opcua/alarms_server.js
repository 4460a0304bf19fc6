// A node-opcua server with OPC UA Alarms & Conditions (Part 9), the foreign peer of the condition
// interop tests: Line1/Filler with a writable Temperature (Double) watched by an exclusive limit alarm
// (Line1/Filler/TemperatureAlarm: LowLow 10, Low 15, High 25, HighHigh 30) and a writable DoorOpen
// (Boolean) watched by an off-normal alarm (Line1/Filler/DoorAlarm, normal = false). Both support
// Acknowledge and Confirm; ConditionRefresh is installed. A client raises a condition by writing the
// input variable. Usage: node alarms_server.js <port> <pki dir>.
// Prints "READY <endpoint> <ns index> <ns uri>".
"use strict";
const { DataType } = require("node-opcua-variant");
const { run } = require("./common");

run("/UA/UnsHubAlarms", "uns-hub interop alarms", (addressSpace, ns) => {
  addressSpace.installAlarmsAndConditionsService();
  const serverObject = addressSpace.rootFolder.objects.server;
  const line = ns.addObject({
    organizedBy: addressSpace.rootFolder.objects, browseName: "Line1", nodeId: "s=Line1",
    notifierOf: serverObject,
  });
  const filler = ns.addObject({
    componentOf: line, browseName: "Filler", nodeId: "s=Line1/Filler", eventSourceOf: line,
  });
  const temperature = ns.addVariable({
    componentOf: filler, browseName: "Temperature", nodeId: "s=Line1/Filler/Temperature",
    dataType: "Double", accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite",
    value: { dataType: DataType.Double, value: 20.0 },
  });
  const doorOpen = ns.addVariable({
    componentOf: filler, browseName: "DoorOpen", nodeId: "s=Line1/Filler/DoorOpen",
    dataType: "Boolean", accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite",
    value: { dataType: DataType.Boolean, value: false },
  });
  const doorNormal = ns.addVariable({
    componentOf: filler, browseName: "DoorNormal", nodeId: "s=Line1/Filler/DoorNormal",
    dataType: "Boolean", value: { dataType: DataType.Boolean, value: false },
  });
  ns.instantiateExclusiveLimitAlarm("ExclusiveLimitAlarmType", {
    browseName: "TemperatureAlarm", nodeId: "s=Line1/Filler/TemperatureAlarm", componentOf: filler,
    conditionSource: filler, conditionName: "TemperatureAlarm", inputNode: temperature,
    lowLowLimit: 10.0, lowLimit: 15.0, highLimit: 25.0, highHighLimit: 30.0,
    optionals: ["ConfirmedState", "Confirm"],
  });
  ns.instantiateOffNormalAlarm({
    browseName: "DoorAlarm", nodeId: "s=Line1/Filler/DoorAlarm", componentOf: filler,
    conditionSource: filler, conditionName: "DoorAlarm", inputNode: doorOpen, normalState: doorNormal,
    optionals: ["ConfirmedState", "Confirm"],
  });
});
