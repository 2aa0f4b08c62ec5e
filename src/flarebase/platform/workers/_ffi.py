"""The Python/JavaScript boundary of a Python Worker (Pyodide), in one place.

Every value that crosses goes through here, so each FFI behaviour is handled once
(see shared/reference/python-workers.md, "FFI behaviour"):

- JS `null` arrives as `pyodide.ffi.jsnull` (falsy, but not None): `to_py`
  turns it into None, at any depth.
- Python `None` would become `undefined`: `to_js_json` sends values through JSON,
  so None becomes `null` and dicts become plain objects (not PyProxies or Maps).
- bytes cross as a Uint8Array copy (`to_js_bytes`); ArrayBuffers and typed arrays
  (Node's Buffer too) come back as bytes (`to_bytes`).
- Large Python ints cross as BigInt (Pyodide already does so for 2**53 - 1),
  which D1 and JSON refuse: `js_int` sends safe integers as exact floats (JS
  numbers), and callers refuse integers beyond 2**53 - 1 (`is_safe_integer`).
- `.to_py()` leaves non-plain objects (Dates, R2 objects, RPC results, Miniflare's
  proxies) as proxies: `to_py` converts them through their own enumerable keys,
  and `attr` reads one attribute directly (getter-based objects enumerate no keys).
- JS errors arrive as `JsException`: `js_error_message` gives Cloudflare's message
  without the "Error: " prefix; callers map it to flarebase's typed errors.

This module imports in CPython too (for type checking and docs): the runtime
names resolve lazily, and calling anything that needs them outside Pyodide raises
a clear RuntimeError.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1

try:  # pragma: no cover - only inside Pyodide
    import pyodide.ffi as _pyffi  # type: ignore[import-not-found]

    import js  # type: ignore[import-not-found]

    JsException: type[BaseException] = _pyffi.JsException
    JsProxy: type = _pyffi.JsProxy
    _to_js = _pyffi.to_js
    # Pyodide 0.28+ has jsnull; before it, null arrived as None.
    JSNULL: Any = getattr(_pyffi, "jsnull", None)
    IN_PYODIDE = True
except ImportError:
    js = None
    IN_PYODIDE = False

    class JsException(Exception):  # type: ignore[no-redef]
        """Stand-in outside Pyodide: never raised."""

    class JsProxy:  # type: ignore[no-redef]
        """Stand-in outside Pyodide: nothing is an instance."""

    def _to_js(value: Any, **kwargs: Any) -> Any:
        raise RuntimeError("flarebase.platform.workers runs only inside a Python Worker (Pyodide)")

    JSNULL = None


def require_runtime() -> Any:
    """The `js` module; a clear error outside a Python Worker."""
    if js is None:
        raise RuntimeError("flarebase.platform.workers runs only inside a Python Worker (Pyodide)")
    return js


# -- JavaScript -> Python ---------------------------------------------------------------------


def is_null(value: Any) -> bool:
    """True for None, JS null and JS undefined."""
    return value is None or (JSNULL is not None and value is JSNULL)


def to_py(value: Any) -> Any:
    """A JS value (or a Python value holding proxies) as plain Python, null as None.

    Plain objects and Maps become dicts, arrays lists, ArrayBuffers and typed
    arrays bytes, Dates aware datetimes in UTC; other objects (class instances,
    proxies) become dicts of their enumerable keys.
    """
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if JSNULL is not None and value is JSNULL:
        return None
    if isinstance(value, JsProxy):
        proxy: Any = value
        try:
            return _clean(proxy.to_py(default_converter=_convert))
        except RuntimeError:  # "Unknown typed array type" (e.g. Node's Buffer): by hand
            return _clean(_convert(proxy, to_py, lambda *_: None))
    return _clean(value)


def _clean(value: Any) -> Any:
    """Replace jsnull (and stray proxies) inside what `.to_py()` returned."""
    kind = type(value)
    if kind is dict:
        for k, v in value.items():
            vk = type(v)
            if not (vk is str or vk is int or vk is float or vk is bool or v is None):
                value[k] = _clean(v)
        return value
    if kind is list:
        for i, v in enumerate(value):
            vk = type(v)
            if not (vk is str or vk is int or vk is float or vk is bool or v is None):
                value[i] = _clean(v)
        return value
    if JSNULL is not None and value is JSNULL:
        return None
    if kind is memoryview:  # what `.to_py()` makes of ArrayBuffers and typed arrays
        return value.tobytes()
    if isinstance(value, JsProxy):
        return to_py(value)
    return value


def _convert(value: Any, convert: Any, cache: Any) -> Any:
    """`default_converter` for objects `.to_py()` does not convert by itself."""
    if _is_binary(value):
        return to_bytes(value)
    name = _constructor_name(value)
    if name == "Date":
        return datetime.fromtimestamp(value.getTime() / 1000, UTC)
    if name == "Map":
        return {convert(k): convert(v) for k, v in js.Array["from"](value.entries())}
    if js.Array.isArray(value):
        out_list: list[Any] = []
        cache(value, out_list)
        out_list.extend(convert(item) for item in value)
        return out_list
    if getattr(value, "typeof", "object") != "object":
        return value
    out: dict[str, Any] = {}
    cache(value, out)
    for entry in js.Object.entries(value):
        out[entry[0]] = convert(entry[1])
    return out


def _constructor_name(value: Any) -> str | None:
    try:
        ctor = value.constructor
        return str(ctor.name) if ctor is not None else None
    except (AttributeError, JsException):
        return None


def _is_binary(value: Any) -> bool:
    try:
        return bool(js.ArrayBuffer.isView(value)) or _constructor_name(value) == "ArrayBuffer"
    except JsException:
        return False


def to_bytes(value: Any) -> bytes:
    """An ArrayBuffer, typed array or list of byte values (D1 BLOBs) as bytes.

    Views are re-viewed as a Uint8Array first: Pyodide's own conversion refuses
    subclasses it does not know (Node's Buffer, which Miniflare's streams yield).
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview | list):
        return bytes(value)
    runtime = require_runtime()
    if runtime.ArrayBuffer.isView(value):
        value = runtime.Uint8Array.new(value.buffer, value.byteOffset, value.byteLength)
    return bytes(value.to_bytes())


def attr(obj: Any, name: str, default: Any = None) -> Any:
    """One attribute of a JS object, read directly (works for getters), null as None."""
    try:
        value = getattr(obj, name)
    except AttributeError:
        return default
    return default if is_null(value) else value


# -- Python -> JavaScript ---------------------------------------------------------------------


def is_safe_integer(value: int) -> bool:
    return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER


def js_int(value: int) -> int | float:
    """A safe integer as what crosses as a JS number.

    Pyodide sends large ints (already 2**53 - 1) as BigInt, which D1 and
    JSON refuse; a float of a safe integer is exact and crosses as a number.
    """
    return int(value) if -(2**31) <= value < 2**31 else float(value)


def to_js_json(value: Any) -> Any:
    """A JSON-able Python value as a plain JS value: None -> null, dict -> Object.

    Raises TypeError/ValueError for values JSON cannot hold (NaN, sets, objects).
    """
    return require_runtime().JSON.parse(json.dumps(value, allow_nan=False))


def to_js_object(options: dict[str, Any]) -> Any:
    """An options object: keys whose value is None are left out (as `undefined`)."""
    return to_js_json({k: v for k, v in options.items() if v is not None})


def to_js_bytes(data: bytes | bytearray | memoryview) -> Any:
    """A Uint8Array copy of `data`."""
    require_runtime()
    if isinstance(data, memoryview):
        data = data.cast("B") if data.format != "B" or data.ndim != 1 else data
    return _to_js(bytes(data))


def to_js_array(items: list[Any]) -> Any:
    """A JS array of already-converted items (JsProxies, strings, numbers)."""
    require_runtime()
    return _to_js(items)


def to_js_value(value: Any) -> Any:
    """Any Python value for an RPC or queue body: plain objects, not Maps or PyProxies.

    bytes become Uint8Arrays, datetimes Dates, JsProxies pass through; everything
    else must be JSON-able (tuples become arrays).
    """
    runtime = require_runtime()
    if value is None:
        return runtime.JSON.parse("null")
    if isinstance(value, JsProxy):
        return value
    if isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        if not is_safe_integer(value):
            raise TypeError(f"integer {value} is beyond JavaScript's safe range (2**53 - 1)")
        return js_int(value)
    if isinstance(value, float):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return to_js_bytes(value)
    if isinstance(value, datetime):
        return runtime.Date.new(value.timestamp() * 1000)
    if isinstance(value, dict):
        obj = runtime.Object.new()
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"object keys must be strings, not {type(k).__name__}")
            setattr(obj, k, to_js_value(v))
        return obj
    if isinstance(value, list | tuple):
        arr = runtime.Array.new()
        for item in value:
            arr.push(to_js_value(item))
        return arr
    raise TypeError(f"cannot send a {type(value).__name__} to JavaScript")


# -- errors -----------------------------------------------------------------------------------


def js_error_name(exc: BaseException) -> str:
    name = getattr(exc, "name", None)
    if isinstance(name, str) and name:
        return name
    text = str(exc)
    head, sep, _ = text.partition(": ")
    return head if sep and head.isidentifier() else "Error"


def js_error_message(exc: BaseException) -> str:
    """The JS error's message, without the `Error: ` prefix `str()` adds."""
    message = getattr(exc, "message", None)
    if isinstance(message, str):
        return message
    text = str(exc)
    name = js_error_name(exc)
    return text.removeprefix(f"{name}: ")
