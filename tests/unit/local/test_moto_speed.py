"""infra.local.moto_speed answers exactly what moto answers: its DynamoDB wire-form path against moto's own
serializer, on attribute values drawn by Hypothesis (every kind DynamoDB has, nested), and through moto itself."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.core import serialize
from moto.core.serialize import XFormedAttributePicker
from moto.core.utils import get_service_model

from infra.local import moto_speed
from tests.unit.local import table_t

moto_speed.install()

numbers = st.one_of(
    st.integers(-(10**12), 10**12).map(str), st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str)
)
scalars = st.one_of(
    st.text(max_size=20).map(lambda s: {"S": s}),
    numbers.map(lambda n: {"N": n}),
    st.binary(max_size=12).map(lambda b: {"B": b}),  # moto holds binary as bytes
    st.lists(st.text(max_size=8), min_size=1, max_size=4, unique=True).map(lambda v: {"SS": v}),
    st.lists(numbers, min_size=1, max_size=4, unique=True).map(lambda v: {"NS": v}),
    st.just({"NULL": True}),
    st.booleans().map(lambda b: {"BOOL": b}),
)
attribute_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4).map(lambda m: {"M": m}),
        st.lists(inner, max_size=4).map(lambda items: {"L": items}),
    ),
    max_leaves=12,
)
items = st.dictionaries(st.text(min_size=1, max_size=10), attribute_values, min_size=1, max_size=6)


def _serialized(item: dict[str, Any], structure: Any) -> str:
    operation = get_service_model("dynamodb").operation_model("GetItem")  # as moto loads it
    serializer = serialize.JSONSerializer(operation_model=operation, value_picker=XFormedAttributePicker())
    original = serialize.BaseJSONSerializer._serialize_type_structure
    serialize.BaseJSONSerializer._serialize_type_structure = structure  # type: ignore[method-assign]
    try:
        return str(serializer.serialize({"Item": item})["body"])
    finally:
        serialize.BaseJSONSerializer._serialize_type_structure = original  # type: ignore[method-assign]


def _motos_own() -> Any:
    fast = serialize.BaseJSONSerializer._serialize_type_structure
    assert getattr(fast, "_bitbridge_fast", False), "install() put the wire-form path in"
    return fast.__closure__[0].cell_contents  # the method it wraps: moto's own


@settings(max_examples=300, deadline=None)
@given(items)
def test_the_wire_form_path_answers_what_motos_serializer_answers(item):
    ours = _serialized(item, serialize.BaseJSONSerializer._serialize_type_structure)
    assert ours == _serialized(item, _motos_own())
    assert json.loads(ours) == {"Item": _on_the_wire(item)}  # and both are DynamoDB's wire form


def _on_the_wire(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _on_the_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_on_the_wire(v) for v in value]
    return value


def test_only_wire_form_takes_the_short_path():
    assert moto_speed._wire_form({"S": "x"}) == {"S": "x"}
    assert moto_speed._wire_form({"M": {"a": {"L": [{"N": "1"}, {"BOOL": False}]}}}) is not None
    for not_wire in ({"B": b"x"}, {"M": {"a": {"B": b"x"}}}, {"N": 1}, {"S": "x", "N": "1"}, {}, "x", {"BOOL": 1}):
        assert moto_speed._wire_form(not_wire) is None  # moto's own path answers these


def test_moto_answers_an_item_of_every_kind_through_it():
    item = {
        "pk": {"S": "a"},
        "n": {"N": "1.5"},
        "b": {"B": b"\x00\xff"},
        "ss": {"SS": ["x", "y"]},
        "m": {"M": {"l": {"L": [{"NULL": True}, {"BOOL": True}, {"B": b"z"}]}}},
    }
    with mock_aws():
        ddb = table_t()
        ddb.put_item(TableName="t", Item=item)
        got = ddb.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"]
        scanned = ddb.scan(TableName="t")["Items"]
    assert got == item and scanned == [item]
