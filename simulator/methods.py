"""OPC UA methods of the simulator: PackML/batch commands on the line, test hooks on ``Simulation``.

Each method is a thin adapter: unwrap the Variants, call the model (or the server for a restart),
mirror the result at once, and turn a refused request into a Bad StatusCode for the caller
(BadInvalidState, BadInvalidArgument, BadNodeIdUnknown) instead of an unexpected server error.

Line object (``ns=<idx>;s=<Line>/<Method>``): Start, Stop, Reset, Hold, Unhold, Abort, Clear,
StartBatch(Order String, Product String, Quantity UInt32), StopBatch() -> (Good UInt64, Reject UInt64).

Simulation object (``ns=<idx>;s=Simulation/<Method>``):
InjectFault(Kind String, TargetTag String, DurationS Double, Value Double) -> FaultId UInt32
  (Value NaN = the kind's default; for bad_status / comm_error / uncertain a non-zero Value is the
  raw StatusCode to use), ClearFaults(TargetTag String; empty = all) -> Cleared UInt32,
RestartServer(DownS Double), ForceStop(DurationS Double[, ReasonCode Int32]),
ForceRejects(Count UInt32[, Cell String]), SetRejectRate(Rate Double[, Cell String]),
RaiseAlarm(Cell String, Alarm String, Active Boolean) -> Events UInt64 (raise or clear the Jam,
DoorOpen or EStop condition of a cell; returns that condition's event count),
SetDisturbance(Cell String, DeltaC Double) (the cell's temperature drifts to setpoint + DeltaC, which
raises its TemperatureAlarm through High and HighHigh; 0 ends it). See :mod:`simulator.alarms`.
SuppressAlarmEvents(Suppress Boolean) (condition events are lost on the way to every client while
true, as from a server whose event queue overflowed; ConditionRefresh still states them),
RequestConditionRefresh() (emits a RefreshRequiredEvent: the server asks its clients to refresh),
AlarmFlood(RatePerS Double, DurationS Double) (toggles every cell's Jam, DoorOpen and EStop round
robin at that many events per second: the alarm flood of bench/alarm_flood.py).
AddFaceplateMember(Member String) (a live type change: a new Double variable on CellFaceplateType and
on every cell's Faceplate, 0.0 until written; kept across RestartServer, see simulator.structure_nodes).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asyncua import Node, ua

from simulator.errors import SimulatorError
from simulator.faults import DEFAULT_STATUS, FaultKind

if TYPE_CHECKING:
    from simulator.server import SimulatedLineServer

log = logging.getLogger(__name__)

MethodHandler = Callable[..., Any]


def _arg(name: str, vtype: ua.VariantType, description: str = "") -> ua.Argument:
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(vtype.value)
    arg.ValueRank = -1
    arg.ArrayDimensions = []
    arg.Description = ua.LocalizedText(description)
    return arg


def _adapt(sim: SimulatedLineServer, name: str, fn: Callable[..., Any],
           outputs: list[ua.VariantType]) -> MethodHandler:
    async def handler(parent: ua.NodeId, *args: Any) -> Any:
        values = [arg.Value if isinstance(arg, ua.Variant) else arg for arg in args]
        try:
            result = fn(*values)
            if inspect.isawaitable(result):
                result = await result
        except SimulatorError as exc:
            log.info("method %s refused: %s", name, exc)
            return ua.StatusCode(getattr(ua.StatusCodes, exc.status_name, ua.StatusCodes.BadInvalidArgument))
        except (TypeError, ValueError) as exc:
            log.info("method %s got bad arguments %r: %s", name, values, exc)
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        except RuntimeError as exc:
            log.info("method %s refused: %s", name, exc)
            return ua.StatusCode(ua.StatusCodes.BadInvalidState)
        await sim.tick_now()
        if not outputs:
            return []
        results = result if isinstance(result, tuple) else (result,)
        return [ua.Variant(value, vtype) for value, vtype in zip(results, outputs, strict=True)]

    return handler


async def _add(parent: Node, ns: int, owner: str, sim: SimulatedLineServer, name: str,
               fn: Callable[..., Any], inputs: list[ua.Argument],
               outputs: list[tuple[str, ua.VariantType]] | None = None) -> None:
    outputs = outputs or []
    await parent.add_method(
        ua.NodeId(f"{owner}/{name}", ns), ua.QualifiedName(name, ns),
        _adapt(sim, name, fn, [vtype for _, vtype in outputs]),
        inputs, [_arg(out_name, vtype) for out_name, vtype in outputs],
    )


async def add_line_methods(line: Node, ns: int, sim: SimulatedLineServer) -> None:
    owner = sim.config.line

    def model_command(name: str) -> Callable[[], None]:
        def run() -> None:
            getattr(sim.model, name)()
        return run

    for name in ("Start", "Stop", "Reset", "Hold", "Unhold", "Abort", "Clear"):
        await _add(line, ns, owner, sim, name, model_command(name.lower()), [])

    def start_batch(order: str, product: str, quantity: int) -> None:
        sim.model.start_batch(str(order or ""), str(product or ""), int(quantity or 0))

    def stop_batch() -> tuple[int, int]:
        window = sim.model.stop_batch()
        return window.good, window.reject

    await _add(line, ns, owner, sim, "StartBatch", start_batch, [
        _arg("Order", ua.VariantType.String, "work order / batch id"),
        _arg("Product", ua.VariantType.String, "product code"),
        _arg("Quantity", ua.VariantType.UInt32, "good parts to make; 0 = until StopBatch"),
    ])
    await _add(line, ns, owner, sim, "StopBatch", stop_batch, [],
               [("Good", ua.VariantType.UInt64), ("Reject", ua.VariantType.UInt64)])


def _optional(values: tuple[Any, ...], index: int, default: Any) -> Any:
    return values[index] if len(values) > index and values[index] is not None else default


async def add_simulation_methods(obj: Node, ns: int, sim: SimulatedLineServer) -> None:
    owner = "Simulation"
    model = sim.model

    def inject_fault(kind: str, tag: str, duration_s: float, value: float | None = None) -> int:
        parsed = FaultKind.parse(str(kind))
        number = None if value is None or math.isnan(value) else float(value)
        status = None
        if parsed in DEFAULT_STATUS:
            status = int(number) if number else None
            number = None
        return model.inject_fault(parsed, str(tag), float(duration_s), number, status).id

    def clear_faults(tag: str = "") -> int:
        return model.clear_faults(tag or None)

    def restart_server(down_s: float) -> None:
        sim.schedule_restart(float(down_s))

    def force_stop(duration_s: float, *rest: Any) -> None:
        reason = int(_optional(rest, 0, 0))
        if reason:
            model.force_stop(float(duration_s), reason)
        else:
            model.force_stop(float(duration_s))

    def force_rejects(count: int, *rest: Any) -> None:
        model.force_rejects(int(count), str(_optional(rest, 0, "")) or None)

    def set_reject_rate(rate: float, *rest: Any) -> None:
        model.set_reject_rate(float(rate), str(_optional(rest, 0, "")) or None)

    def raise_alarm(cell: str, alarm: str, active: bool) -> int:
        return model.set_alarm(str(cell), str(alarm), bool(active)).events

    def set_disturbance(cell: str, delta_c: float) -> None:
        model.set_disturbance(str(cell), float(delta_c))

    await _add(obj, ns, owner, sim, "RaiseAlarm", raise_alarm, [
        _arg("Cell", ua.VariantType.String, "cell name, e.g. Filler"),
        _arg("Alarm", ua.VariantType.String, "jam, door_open or estop"),
        _arg("Active", ua.VariantType.Boolean, "true raises, false clears"),
    ], [("Events", ua.VariantType.UInt64)])
    await _add(obj, ns, owner, sim, "SuppressAlarmEvents", sim.suppress_alarm_events, [
        _arg("Suppress", ua.VariantType.Boolean, "true: condition events reach no client (ConditionRefresh "
                                                 "still states them); false: delivered again"),
    ])
    await _add(obj, ns, owner, sim, "RequestConditionRefresh", sim.request_condition_refresh, [])
    await _add(obj, ns, owner, sim, "AddFaceplateMember", sim.add_faceplate_member, [
        _arg("Member", ua.VariantType.String, "name of a new Double variable of CellFaceplateType and of every "
                                              "cell's Faceplate (a live type change, as a PLC download)"),
    ])

    def alarm_flood(rate_per_s: float, duration_s: float) -> None:
        model.start_alarm_flood(float(rate_per_s), float(duration_s))

    await _add(obj, ns, owner, sim, "AlarmFlood", alarm_flood, [
        _arg("RatePerS", ua.VariantType.Double, "condition events per second (off-normal alarms toggled)"),
        _arg("DurationS", ua.VariantType.Double, "seconds the flood lasts"),
    ])
    await _add(obj, ns, owner, sim, "SetDisturbance", set_disturbance, [
        _arg("Cell", ua.VariantType.String, "cell name, e.g. Filler"),
        _arg("DeltaC", ua.VariantType.Double, "degC above (or below) the setpoint; 0 ends it"),
    ])
    await _add(obj, ns, owner, sim, "InjectFault", inject_fault, [
        _arg("Kind", ua.VariantType.String,
             "bad_status, comm_error, uncertain, spike, freeze, future_timestamp or past_timestamp"),
        _arg("TargetTag", ua.VariantType.String, "tag path, e.g. Line1/Filler/Temperature"),
        _arg("DurationS", ua.VariantType.Double, "seconds the fault lasts"),
        _arg("Value", ua.VariantType.Double,
             "spike value / seconds ahead or behind / raw StatusCode; NaN or 0 = default"),
    ], [("FaultId", ua.VariantType.UInt32)])
    await _add(obj, ns, owner, sim, "ClearFaults", clear_faults,
               [_arg("TargetTag", ua.VariantType.String, "empty = every tag")],
               [("Cleared", ua.VariantType.UInt32)])
    await _add(obj, ns, owner, sim, "RestartServer", restart_server,
               [_arg("DownS", ua.VariantType.Double, "seconds the endpoint stays down")])
    await _add(obj, ns, owner, sim, "ForceStop", force_stop, [
        _arg("DurationS", ua.VariantType.Double, "seconds held"),
        _arg("ReasonCode", ua.VariantType.Int32, "stop reason, 0 = 180000 technical"),
    ])
    await _add(obj, ns, owner, sim, "ForceRejects", force_rejects, [
        _arg("Count", ua.VariantType.UInt32, "parts to reject"),
        _arg("Cell", ua.VariantType.String, "cell that rejects them; empty = last cell"),
    ])
    await _add(obj, ns, owner, sim, "SetRejectRate", set_reject_rate, [
        _arg("Rate", ua.VariantType.Double, "reject probability 0..1"),
        _arg("Cell", ua.VariantType.String, "one cell; empty = every cell"),
    ])
