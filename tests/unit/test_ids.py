"""Task types, task ids and table names: the only request data near SQL text."""

from __future__ import annotations

import uuid

import pytest

from asyncflow.core.ids import (
    check_task_type,
    new_task_id,
    new_task_ids,
    parse_task_id,
    task_table,
)
from asyncflow.errors import InvalidArgument

HOSTILE_TYPES = [
    "",
    "Lark",
    "1lark",
    "_lark",
    "lark-x",
    "lark;drop table t_schedule_cfg",
    "lark` --",
    "lark task",
    "../lark",
    "lark\x00",
    "lärk",
    "a" * 49,
]


@pytest.mark.parametrize("task_type", ["lark", "a", "send_mail_v2", "a" * 48, "x__y"])
def test_task_id_round_trips(task_type: str) -> None:
    task_id = new_task_id(task_type, 17)
    assert parse_task_id(task_id) == (task_type, 17)
    assert task_table(task_type, 17) == f"t_{task_type}_task_17"


def test_client_key_is_the_first_segment() -> None:
    assert new_task_id("send_mail", 3, "order-42") == "order-42_send-mail_3"


@pytest.mark.parametrize("task_type", HOSTILE_TYPES)
def test_hostile_task_types_are_refused(task_type: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        check_task_type(task_type)
    assert refused.value.field == "task_type"
    with pytest.raises(ValueError, match="refusing"):
        task_table(task_type, 1)


@pytest.mark.parametrize(
    "task_id",
    [
        "",
        "abc",
        "a_b",
        "a_lark_1_2",
        "a_lark_0",
        "a_lark_01",
        "a_lark_-1",
        "a_lark_1e3",
        "a_lark_\u0661",  # a non-ASCII digit
        "a_lark_123456789",
        "a_lark_" + "1" * 5000,  # int() raises ValueError past 4300 digits
        "a_lark_" + "0" * 20 + "1",
        "a_lark;drop_1",
        "a_../x_1",
        "a b_lark_1",
        "a_Lark_1",
    ],
)
def test_malformed_task_ids_are_refused(task_id: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_task_id(task_id)
    assert refused.value.field == "task_id"


@pytest.mark.parametrize("pos", [0, -1, 100_000_000, True, 1.0])
def test_table_names_need_a_positive_int_position(pos: object) -> None:
    with pytest.raises(ValueError, match="refusing"):
        task_table("lark", pos)  # type: ignore[arg-type]


def test_a_task_id_without_a_key_gets_a_fresh_uuid4() -> None:
    keys = {new_task_id("lark", 3).split("_")[0] for _ in range(1000)}
    assert len(keys) == 1000
    for key in keys:
        parsed = uuid.UUID(key)
        assert str(parsed) == key
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_task_ids_made_together_are_fresh_uuid4s_or_keys() -> None:
    ids = new_task_ids([("send_mail", 3, None)] * 1000 + [("lark", 1, "order-42")])
    assert ids[-1] == "order-42_lark_1"
    keys = {task_id.split("_")[0] for task_id in ids[:-1]}
    assert len(keys) == 1000
    for task_id in ids[:-1]:
        key, task_type, pos = task_id.split("_")
        assert (task_type, pos) == ("send-mail", "3")
        parsed = uuid.UUID(key)
        assert str(parsed) == key
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    assert new_task_ids([]) == []
