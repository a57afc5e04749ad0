"""Open Inference Protocol tensors: decoding requests and encoding results, without a server."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

pytest.importorskip("starlette", reason="needs the 'serve' extra")

from fastroute.serving import protocol  # noqa: E402
from fastroute.serving.protocol import ProtocolError, encode_infer_response, encode_tensor, parse_infer_request  # noqa: E402

LIMIT = 1 << 20


def request(tensor: dict, **document) -> bytes:
    return json.dumps({"inputs": [tensor], **document}).encode()


def parse(tensor: dict, **document):
    return parse_infer_request(request(tensor, **document), None, LIMIT)


def test_json_tensors_become_arrays_of_their_shape_and_datatype() -> None:
    decoded = parse({"name": "x", "datatype": "INT16", "shape": [2, 2], "data": [[1, 2], [3, 4]]})
    assert decoded.input.dtype == np.int16 and decoded.input.tolist() == [[1, 2], [3, 4]]
    flat = parse({"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4.5]})
    assert flat.input.dtype == np.float32 and flat.input.shape == (2, 2)
    assert parse({"name": "x", "datatype": "BOOL", "shape": [2], "data": [True, False]}).input.tolist() == [True, False]


def test_bytes_tensors_become_text_or_file_bytes() -> None:
    assert parse({"name": "t", "datatype": "BYTES", "shape": [1], "data": ["héllo"]}).input == "héllo"
    file_bytes = parse({"name": "f", "datatype": "BYTES", "shape": [1], "data": ["AAEC"], "parameters": {"content_type": "base64"}})
    assert file_bytes.input == b"\x00\x01\x02"


def test_binary_tensor_data() -> None:
    values = np.array([[1, 2], [3, 4]], dtype="<i4")
    head = request({"name": "x", "datatype": "INT32", "shape": [2, 2], "parameters": {"binary_data_size": 16}})
    decoded = parse_infer_request(head + values.tobytes(), str(len(head)), LIMIT)
    assert decoded.input.tolist() == values.tolist() and decoded.input.flags.writeable
    text = "naïve".encode()
    head = request({"name": "t", "datatype": "BYTES", "shape": [1],
                    "parameters": {"binary_data_size": 4 + len(text), "content_type": "str"}})
    assert parse_infer_request(head + struct.pack("<I", len(text)) + text, str(len(head)), LIMIT).input == "naïve"


@pytest.mark.parametrize(
    ("tensor", "message"),
    [({"name": "x", "datatype": "INT8", "shape": [1], "data": [128]}, "out of range for INT8"),
     ({"name": "x", "datatype": "UINT8", "shape": [1], "data": [-1]}, "out of range for UINT8"),
     ({"name": "x", "datatype": "INT32", "shape": [1], "data": [True]}, "INT32 data must be integers"),
     ({"name": "x", "datatype": "BOOL", "shape": [1], "data": [1]}, "BOOL data must be true/false"),
     ({"name": "x", "datatype": "FP32", "shape": [1], "data": ["1"]}, "FP32 data must be numbers"),
     ({"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}, "needs 2"),
     ({"name": "x", "datatype": "FP32", "shape": "2", "data": [1]}, "shape must be a list"),
     ({"name": "x", "datatype": "FP32", "shape": [True], "data": [1]}, "shape must be a list"),
     ({"name": 3, "datatype": "FP32", "shape": [1], "data": [1]}, "'name' must be a string"),
     ({"name": "x", "datatype": "FP32", "shape": [1]}, "has no 'data'"),
     ({"name": "x", "datatype": "FP32", "shape": [1], "data": [1], "parameters": [1]}, "must be a JSON object")],
)
def test_bad_tensors_name_the_problem(tensor: dict, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as refused:
        parse(tensor)
    assert refused.value.status == 400


def test_binary_sizes_are_checked_against_the_body() -> None:
    head = request({"name": "x", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 16}})
    with pytest.raises(ProtocolError, match="does not match the 8 bytes"):
        parse_infer_request(head + bytes(8), str(len(head)), LIMIT)
    with pytest.raises(ProtocolError, match="outside the body"):
        parse_infer_request(head, str(len(head) + 1), LIMIT)
    bytes_head = request({"name": "t", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}})
    with pytest.raises(ProtocolError, match="past the end"):
        parse_infer_request(bytes_head + struct.pack("<I", 99) + b"ab", str(len(bytes_head)), LIMIT)
    json_only = request({"name": "x", "datatype": "FP32", "shape": [1], "data": [1]})
    with pytest.raises(ProtocolError, match="no input declares them"):
        parse_infer_request(json_only + b"xx", str(len(json_only)), LIMIT)


def test_element_limit_is_413_before_any_allocation() -> None:
    with pytest.raises(ProtocolError, match="limit is") as refused:
        parse({"name": "x", "datatype": "FP32", "shape": [1 << 40], "data": []})
    assert refused.value.status == 413


def test_requested_outputs() -> None:
    decoded = parse({"name": "x", "datatype": "FP32", "shape": [1], "data": [1]},
                    outputs=[{"name": "score", "parameters": {"binary_data": True}}])
    assert (decoded.output_name, decoded.binary_output) == ("score", True)
    with pytest.raises(ProtocolError, match="at most one output"):
        parse({"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}, outputs=[{"name": "a"}, {"name": "b"}])


def test_results_encode_as_tensors() -> None:
    assert encode_tensor(np.arange(6, dtype=np.uint16).reshape(2, 3), "y", False)[0] == {
        "name": "y", "datatype": "UINT16", "shape": [2, 3], "data": [0, 1, 2, 3, 4, 5]}
    assert encode_tensor(True, "y", False)[0]["datatype"] == "BOOL"
    assert encode_tensor(3, "y", False)[0] == {"name": "y", "datatype": "INT64", "shape": [1], "data": [3]}
    assert encode_tensor(["a", "b"], "y", False)[0] == {"name": "y", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}
    tensor, raw = encode_tensor(b"\x00\xff", "y", False)
    assert tensor["parameters"] == {"content_type": "base64"} and tensor["data"] == ["AP8="] and raw is None
    tensor, raw = encode_tensor("hé", "y", True)
    assert raw == struct.pack("<I", 3) + "hé".encode() and tensor["parameters"]["binary_data_size"] == 7
    tensor, raw = encode_tensor(np.float32(1.5), "y", True)
    assert tensor["datatype"] == "FP32" and np.frombuffer(raw, "<f4").tolist() == [1.5]
    for unencodable in ({"a": 1}, None, np.array([1j])):
        with pytest.raises(ProtocolError, match="no (tensor encoding|protocol datatype)") as refused:
            encode_tensor(unencodable, "y", False)
        assert refused.value.status == 500


def test_nan_and_infinity_survive_both_ways() -> None:
    # Python's json (and clients built on it) write NaN and Infinity tokens; orjson refuses
    # them, so such bodies are read by the standard library, and such results written by it.
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1.5, NaN, -Infinity]}]}'
    decoded = parse_infer_request(body, None, LIMIT)
    assert decoded.input[0] == 1.5 and np.isnan(decoded.input[1]) and decoded.input[2] == -np.inf
    with pytest.raises(ProtocolError, match="not valid JSON"):
        parse_infer_request(b'{"inputs": [NaX]}', None, LIMIT)
    head, _ = encode_infer_response(np.array([0.5, np.nan, np.inf]), decoded, "m", "1", {"model": "m"})
    assert b"[0.5,NaN,Infinity]" in head
    values = json.loads(head)["outputs"][0]["data"]
    assert values[0] == 0.5 and np.isnan(values[1]) and values[2] == np.inf
    finite, _ = encode_infer_response(np.array([0.5, 2.0]), decoded, "m", "1", {"propensity": 0.25})
    assert json.loads(finite) == {"model_name": "m", "model_version": "1", "parameters": {"propensity": 0.25},
                                  "outputs": [{"name": "output", "datatype": "FP64", "shape": [2], "data": [0.5, 2.0]}]}


def test_without_orjson_the_standard_library_reads_and_writes_the_same_bodies(monkeypatch) -> None:
    """orjson comes with the 'serve' extra; without it every body goes through the standard library."""
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.5, -2]}], "id": "r1"}'

    def round_trip() -> tuple[list[float], bytes]:
        decoded = parse_infer_request(body, None, LIMIT)
        head, _ = encode_infer_response(np.array([0.5, 2.0]), decoded, "m", "1", {"propensity": 0.25})
        return decoded.input.tolist(), head

    fast = round_trip()
    monkeypatch.setattr(protocol, "orjson", None)
    assert round_trip() == fast
    with pytest.raises(ProtocolError, match="not valid JSON"):
        parse_infer_request(b'{"inputs": [', None, LIMIT)
