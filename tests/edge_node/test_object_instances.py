"""edge_node.object_instances: an object instance's member samples combined into one instance sample
(per-member quality: a Bad member is a null member of an Uncertain instance; all Bad is a Bad instance)."""

from __future__ import annotations

from asyncua import ua

from edge_node.object_instances import UNCERTAIN_DATA_SUB_NORMAL, ObjectInstance
from edge_node.validation import RawSample

BAD_SENSOR = 0x808B0000  # BadSensorFailure
UNCERTAIN_SENSOR = 0x40930000


def instance() -> ObjectInstance:
    return ObjectInstance({"Speed": ua.NodeId("F.Speed", 2), "State": ua.NodeId("F.State", 2)})


def test_good_members_make_a_good_instance_with_the_newest_timestamps() -> None:
    obj = instance()
    obj.update("Speed", RawSample(120.0, 0, 1000, 1001))
    obj.update("State", RawSample("Execute", 0, 2000, 2002))
    assert obj.sample() == RawSample({"Speed": 120.0, "State": "Execute"}, 0, 2000, 2002)


def test_a_bad_member_is_null_and_the_instance_uncertain() -> None:
    obj = instance()
    obj.update("Speed", RawSample(120.0, BAD_SENSOR, 1000, 1001))
    obj.update("State", RawSample("Execute", 0, 2000, 2002))
    assert obj.sample() == RawSample({"Speed": None, "State": "Execute"}, UNCERTAIN_DATA_SUB_NORMAL, 2000, 2002)


def test_an_uncertain_member_makes_the_instance_uncertain_with_its_status() -> None:
    obj = instance()
    obj.update("Speed", RawSample(120.0, UNCERTAIN_SENSOR, 1000, None))
    obj.update("State", RawSample("Execute", 0, None, None))
    assert obj.sample() == RawSample({"Speed": 120.0, "State": "Execute"}, UNCERTAIN_SENSOR, 1000, None)


def test_every_member_bad_is_a_bad_null_instance() -> None:
    obj = instance()
    obj.update("Speed", RawSample(None, BAD_SENSOR, 1000, None))
    assert obj.sample() == RawSample(None, BAD_SENSOR, 1000, None)  # State not read yet: Bad too
    obj.update("State", RawSample(None, 0x80310000, 3000, None))
    assert obj.sample() == RawSample(None, BAD_SENSOR, 3000, None)
