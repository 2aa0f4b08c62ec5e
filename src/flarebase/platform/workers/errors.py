"""JavaScript errors from the runtime's bindings, as flarebase's typed errors.

The message is Cloudflare's own (`D1_ERROR: near "SELEC": syntax error ...`,
`KV PUT failed: 414 ...`), without the `Error: ` prefix Pyodide adds; the code
is the one the `local` provider gives for the same failure.
"""

from __future__ import annotations

import re

from ..errors import D1Error, DurableObjectError, KVError, QueueError, R2Error, VectorizeError
from ..kv import KVTypeError
from ._ffi import js_error_message, js_error_name

_D1_CODE = re.compile(r"^(D1_[A-Z_]+):")


def d1_error(exc: BaseException) -> D1Error:
    """`D1_ERROR: ...` -> D1Error(code="D1_ERROR"); a JS TypeError -> D1_TYPE_ERROR."""
    message = js_error_message(exc)
    match = _D1_CODE.match(message)
    if match:
        code = match.group(1)
    elif js_error_name(exc) == "TypeError":
        code = "D1_TYPE_ERROR"
    else:
        code = "D1_ERROR"
    return D1Error(message, code=code)


def kv_error(exc: BaseException) -> KVError:
    """workerd's TypeErrors -> KVTypeError; the KV service's `KV <OP> failed: ...` -> KVError."""
    message = js_error_message(exc)
    if js_error_name(exc) == "TypeError":
        return KVTypeError(message)
    if " failed: 429 " in message:
        return KVError(message, code="KV_TOO_MANY_REQUESTS")
    return KVError(message)


def r2_error(exc: BaseException) -> R2Error:
    """`put: The specified object name is not valid. (10020)` -> R2Error with the R2 code.

    The code is the v4 code's R2/S3 error name where flarebase knows it (as the
    local provider names it), else `TypeError`/`RangeError` for workerd's own
    argument errors, else R2_ERROR.
    """
    message = js_error_message(exc)
    name = js_error_name(exc)
    from ..r2 import _ERRORS, R2OperationError  # lazily: r2.py is a large module

    match = re.search(r"\((\d+)\)\s*$", message)
    if match:
        v4code = int(match.group(1))
        action = message.split(":", 1)[0]
        for error_name, (status, number, _text) in _ERRORS.items():
            if number == v4code:
                code = "BadUpload" if error_name == "PartsNotSameLength" else error_name
                return R2OperationError(
                    message, code=code, action=action, status=status, v4code=v4code
                )
        if v4code == 10037:
            return R2OperationError(
                message, code="BadDigest", action=action, status=400, v4code=v4code
            )
        return R2OperationError(message, code="R2_ERROR", action=action, status=500, v4code=v4code)
    if name in ("TypeError", "RangeError"):
        return R2Error(message, code=name)
    return R2Error(message)


def vectorize_error(exc: BaseException) -> VectorizeError:
    return VectorizeError(js_error_message(exc))


def queue_error(exc: BaseException) -> QueueError:
    return QueueError(js_error_message(exc))


def durable_object_error(exc: BaseException) -> DurableObjectError:
    return DurableObjectError(js_error_message(exc))
