"""Open Inference Protocol (KServe V2) tensors: JSON (and Triton's binary extension) <-> Python.

A request carries exactly one input tensor, which becomes the one input the
router analyses and a model receives:

- a numeric or BOOL tensor becomes a numpy array of its shape and datatype;
- a BYTES tensor holding one element becomes a ``str`` when it came as a JSON
  string (text), or ``bytes`` when it came as binary data or with the input
  parameter ``"content_type": "base64"`` (file bytes); a binary BYTES element
  with ``"content_type": "str"`` is decoded as UTF-8 text.

Binary tensor data (Triton's extension, what ``tritonclient`` sends by
default): the request body is the JSON header of ``Inference-Header-Content-Length``
bytes followed by each input's raw bytes, sized by its ``binary_data_size``
parameter. Outputs come back binary when the request asks for it
(``"binary_data_output": true``, or ``"binary_data": true`` on a requested output).

A model's result becomes one output tensor: numpy arrays and numbers keep
their datatype, ``bool``/``int``/``float`` become BOOL/INT64/FP64 of shape
[1], ``str``/``bytes`` (and lists of them) BYTES; anything else is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import orjson  # the 'serve' extra: several times faster than the standard library
except ImportError:  # without it the standard library reads and writes every body
    orjson = None

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "ProtocolError",
    "InferRequest",
    "parse_infer_request",
    "encode_infer_response",
    "encode_tensor",
]

#: The header naming the JSON part's length in a body with binary tensor data.
HEADER_LENGTH = "inference-header-content-length"

#: Protocol datatype -> numpy dtype (little-endian, as the binary extension lays it out).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_BYTES = "BYTES"
_DTYPE_NAMES = {(dtype.kind, dtype.itemsize): name for name, dtype in DATATYPES.items()}
# Which JSON scalar kinds (numpy kinds of np.array(data)) each datatype kind accepts.
_ACCEPTED_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}
_MAX_DIMS = 32


class ProtocolError(Exception):
    """A request the protocol refuses; becomes ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InferRequest:
    """One decoded inference request: the input, and what the response must echo or honour."""

    input: Any
    request_id: str | None
    parameters: Mapping[str, Any]
    output_name: str
    binary_output: bool


def parse_infer_request(body: bytes, header_length: str | None, max_elements: int) -> InferRequest:
    """Decode an infer request body (JSON, or JSON + binary tensor data)."""
    json_part, binary = _split_body(body, header_length)
    document = _decode_json(json_part)
    if not isinstance(document, dict):
        raise ProtocolError("request body must be a JSON object with an 'inputs' list")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        count = len(inputs) if isinstance(inputs, list) else "no"
        raise ProtocolError(f"request must have exactly one input tensor in 'inputs', got {count}")
    parameters = _mapping(document.get("parameters"), "parameters")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"'id' must be a string, got {type(request_id).__name__}")
    tensor_input = _decode_tensor(inputs[0], binary, max_elements)
    output_name, binary_output = _requested_output(document.get("outputs"), parameters)
    return InferRequest(tensor_input, request_id, parameters, output_name, binary_output)


def encode_infer_response(
    result: Any, request: InferRequest, model: str, version: str, parameters: Mapping[str, Any]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers for one model result."""
    tensor, raw = encode_tensor(result, request.output_name, request.binary_output)
    document: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": [tensor]}
    if request.request_id is not None:
        document["id"] = request.request_id
    if parameters:
        document["parameters"] = dict(parameters)
    head = _encode_json(document, finite=raw is not None or _all_finite(tensor))
    if raw is None:
        return head, {"content-type": "application/json"}
    return head + raw, {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head))}


def encode_tensor(result: Any, name: str, binary: bool) -> tuple[dict[str, Any], bytes | None]:
    """One output tensor (JSON part, raw bytes when ``binary``) for a model's result."""
    if isinstance(result, (str, bytes, bytearray)):
        return _bytes_tensor(name, [result], [1], binary)
    if isinstance(result, (bool, int, float, np.generic)) and not isinstance(result, (np.str_, np.bytes_)):
        array = np.asarray([result])
    elif isinstance(result, (np.ndarray, list, tuple)):
        array = np.asarray(result) if not isinstance(result, np.ndarray) else result
    else:
        raise ProtocolError(f"the model returned a {type(result).__name__}, which has no tensor encoding", 500)
    if array.dtype.kind in "USO":
        items = array.ravel().tolist()
        if not all(isinstance(item, (str, bytes)) for item in items):
            raise ProtocolError("the model returned an object array that is not all str or bytes", 500)
        return _bytes_tensor(name, items, list(array.shape), binary)
    datatype = _DTYPE_NAMES.get((array.dtype.kind, array.dtype.itemsize))
    if datatype is None:
        raise ProtocolError(f"the model returned a {array.dtype} array, which has no protocol datatype", 500)
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    if binary:
        raw = np.ascontiguousarray(array, dtype=DATATYPES[datatype]).tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
        return tensor, raw
    tensor["data"] = array.ravel().tolist()
    return tensor, None


# -- JSON: orjson (when installed) on the hot path, the standard library where it differs --


def _decode_json(text: bytes) -> Any:
    """The JSON document; what orjson refuses (NaN and Infinity tokens, which some clients
    write for floats; UTF-16 text; huge integers) the standard library may still read."""
    if orjson is not None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise ProtocolError(f"request body is not valid JSON: {error}") from None


def _encode_json(document: Mapping[str, Any], finite: bool) -> bytes:
    """Compact JSON; NaN and infinities (which orjson would write as null) as NaN and
    Infinity tokens, as Python's json and Triton's clients read them."""
    if finite and orjson is not None:
        return orjson.dumps(document)
    return json.dumps(document, allow_nan=True, separators=(",", ":")).encode()


def _all_finite(tensor: Mapping[str, Any]) -> bool:
    """False when a JSON tensor's float data holds a NaN or an infinity."""
    return not tensor["datatype"].startswith("FP") or all(map(math.isfinite, tensor["data"]))


# -- decoding ----------------------------------------------------------------------------


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    try:
        length = int(header_length)
    except ValueError:
        raise ProtocolError(f"Inference-Header-Content-Length must be an integer, got {header_length!r}") from None
    if not 0 < length <= len(body):
        raise ProtocolError(f"Inference-Header-Content-Length {length} is outside the body's {len(body)} bytes")
    view = memoryview(body)
    return bytes(view[:length]), view[length:]


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"'{where}' must be a JSON object, got {type(value).__name__}")
    return value


def _decode_tensor(tensor: Any, binary: memoryview, max_elements: int) -> Any:
    if not isinstance(tensor, dict):
        raise ProtocolError("each input must be a JSON object with name, datatype, shape and data")
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if not isinstance(name, str):
        raise ProtocolError("input 'name' must be a string")
    if datatype != _BYTES and datatype not in DATATYPES:
        raise ProtocolError(f"input {name!r}: unknown datatype {datatype!r}; expected one of {[*DATATYPES, _BYTES]}")
    count = _element_count(name, shape, max_elements)
    parameters = _mapping(tensor.get("parameters"), f"inputs[{name}].parameters")
    binary_size = parameters.get("binary_data_size")
    if binary_size is not None:
        if not isinstance(binary_size, int) or isinstance(binary_size, bool) or binary_size != len(binary):
            raise ProtocolError(
                f"input {name!r}: binary_data_size {binary_size!r} does not match the {len(binary)} bytes after the header"
            )
        if datatype == _BYTES:
            return _one_item(name, _binary_bytes(name, binary, count), parameters.get("content_type") == "str")
        return _binary_array(name, datatype, shape, binary)
    if len(binary):
        raise ProtocolError(f"{len(binary)} bytes of binary data follow the header but no input declares them")
    if "data" not in tensor:
        raise ProtocolError(f"input {name!r} has no 'data'")
    if datatype == _BYTES:
        return _json_bytes(name, tensor["data"], count, parameters.get("content_type"))
    return _json_array(name, datatype, shape, count, tensor["data"])


def _element_count(name: str, shape: Any, max_elements: int) -> int:
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise ProtocolError(f"input {name!r}: shape must be a list of at most {_MAX_DIMS} non-negative integers, got {shape!r}")
    count = math.prod(shape)
    if count > max_elements:
        raise ProtocolError(f"input {name!r}: shape {shape} has {count} elements; the limit is {max_elements}", 413)
    return count


def _json_array(name: str, datatype: str, shape: list[int], count: int, data: Any) -> np.ndarray:
    dtype = DATATYPES[datatype]
    try:
        values = np.array(data if isinstance(data, list) else [data])
    except ValueError:
        raise ProtocolError(f"input {name!r}: 'data' is a ragged nested list") from None
    if values.size != count:
        raise ProtocolError(f"input {name!r}: 'data' has {values.size} elements but shape {shape} needs {count}")
    if count and values.dtype.kind not in _ACCEPTED_KINDS[dtype.kind]:
        raise ProtocolError(f"input {name!r}: {datatype} data must be {_kind_words(dtype.kind)}, got {values.dtype.kind!r} values")
    with np.errstate(over="ignore", invalid="ignore"):
        array = values.astype(dtype).reshape(shape)
    if dtype.kind in "iu" and count and not np.array_equal(array.ravel(), values.ravel()):
        raise ProtocolError(f"input {name!r}: a value is out of range for {datatype}")
    return array


def _kind_words(kind: str) -> str:
    return {"b": "true/false", "u": "integers", "i": "integers", "f": "numbers"}[kind]


def _binary_array(name: str, datatype: str, shape: list[int], raw: memoryview) -> np.ndarray:
    dtype = DATATYPES[datatype]
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise ProtocolError(f"input {name!r}: {len(raw)} bytes of {datatype} do not fill shape {shape} ({expected} bytes)")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()  # writable, owned by the request


def _binary_bytes(name: str, raw: memoryview, count: int) -> list[bytes]:
    """Triton's BYTES layout: each element is a 4-byte little-endian length and its bytes."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ProtocolError(f"input {name!r}: BYTES data ends inside an element's length")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise ProtocolError(f"input {name!r}: a BYTES element claims {size} bytes past the end of the data")
        items.append(bytes(raw[offset : offset + size]))
        offset += size
    if len(items) != count:
        raise ProtocolError(f"input {name!r}: {len(items)} BYTES elements for a shape of {count}")
    return items


def _json_bytes(name: str, data: Any, count: int, content_type: Any) -> str | bytes:
    items = data if isinstance(data, list) else [data]
    while len(items) == 1 and isinstance(items[0], list):  # [[["text"]]]: nested rows of one
        items = items[0]
    if len(items) != count or not all(isinstance(item, str) for item in items):
        raise ProtocolError(f"input {name!r}: BYTES 'data' must be {count} JSON string(s)")
    if content_type == "base64":
        try:
            items = [base64.b64decode(item, validate=True) for item in items]
        except binascii.Error as error:
            raise ProtocolError(f"input {name!r}: content_type base64 but the data is not base64: {error}") from None
    return _one_item(name, items, as_text=False)


def _one_item(name: str, items: list[Any], as_text: bool) -> str | bytes:
    if len(items) != 1:
        raise ProtocolError(f"input {name!r}: a BYTES input holds one text or file per request, got {len(items)}")
    item = items[0]
    if as_text and isinstance(item, bytes):
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ProtocolError(f"input {name!r}: content_type str but the bytes are not UTF-8: {error}") from None
    return item


def _requested_output(outputs: Any, parameters: Mapping[str, Any]) -> tuple[str, bool]:
    """The output's name (the first requested, else "output") and whether it goes binary."""
    binary = parameters.get("binary_data_output") is True
    if outputs is None:
        return "output", binary
    if not isinstance(outputs, list) or len(outputs) > 1 or not all(isinstance(o, dict) for o in outputs):
        raise ProtocolError("'outputs' must list at most one output: a router model has one output tensor")
    if not outputs:
        return "output", binary
    name = outputs[0].get("name")
    if not isinstance(name, str):
        raise ProtocolError("a requested output needs a string 'name'")
    requested = _mapping(outputs[0].get("parameters"), f"outputs[{name}].parameters")
    return name, binary or requested.get("binary_data") is True


def _bytes_tensor(name: str, items: list[Any], shape: list[int], binary: bool) -> tuple[dict[str, Any], bytes | None]:
    tensor: dict[str, Any] = {"name": name, "datatype": _BYTES, "shape": shape}
    if binary:
        encoded = [item.encode() if isinstance(item, str) else bytes(item) for item in items]
        raw = b"".join(struct.pack("<I", len(item)) + item for item in encoded)
        tensor["parameters"] = {"binary_data_size": len(raw)}
        return tensor, raw
    if any(isinstance(item, (bytes, bytearray)) for item in items):  # JSON strings cannot carry raw bytes
        tensor["parameters"] = {"content_type": "base64"}
        items = [base64.b64encode(item.encode() if isinstance(item, str) else item).decode() for item in items]
    tensor["data"] = items
    return tensor, None
