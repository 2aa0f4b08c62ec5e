"""What the sign-in and sign-up endpoints accept: JSON from API clients, or
`application/x-www-form-urlencoded` from the HTML pages' forms (read without
python-multipart). Bad input becomes a 422 listing every field, like FastAPI's."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ApiError
from .passwords import password_problems

FORM = "application/x-www-form-urlencoded"
MAX_EMAIL = 254
# The HTML living standard's email syntax, requiring a dot in the domain.
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)


class SignInBody(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    email: str = Field(max_length=1024, description="the account's email address")
    password: str = Field(max_length=1024)
    callbackUrl: str | None = Field(
        default=None, max_length=2048, description="forms: where to go once signed in"
    )


class SignUpBody(SignInBody):
    name: str | None = Field(default=None, max_length=200, description="display name")


class GuestBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    callbackUrl: str | None = Field(default=None, max_length=2048)


def request_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` documenting both the JSON and the form encoding of `model`."""
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": schema}, FORM: {"schema": schema}},
        }
    }


@dataclass(frozen=True, slots=True)
class Body:
    data: dict[str, Any]
    is_form: bool


async def read_body(request: Request, *, required: bool = True) -> Body:
    """The request's JSON object or form fields; 415 for any other encoding."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if not raw.strip() and not required:
        return Body({}, media == FORM)
    if media == FORM:
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise invalid([("body",)], "the form is not UTF-8") from None
        data: dict[str, Any] = {}
        for key, value in pairs:
            data.setdefault(key, value)
        return Body(data, True)
    if media == "application/json" or media.endswith("+json"):
        try:
            parsed = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise invalid([("body",)], "the body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise invalid([("body",)], "the body must be a JSON object")
        return Body(parsed, False)
    if not media and not raw.strip():
        raise invalid([("body",)], "a JSON object is required")
    raise ApiError(415, "unsupported_media_type", f"send JSON or {FORM}")


def invalid(locs: list[tuple[str, ...]], message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": loc, "msg": message, "type": "value_error"} for loc in locs]
    )


def parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = [{**err, "loc": ("body", *err["loc"])} for err in e.errors()]
        for err in errors:
            err.pop("input", None)
            err.pop("ctx", None)
        raise RequestValidationError(errors) from None


def normalize_email(value: str) -> str | None:
    """The address trimmed and lowercased, or None if it is not an email address."""
    email = value.strip().lower()
    if len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email):
        return None
    return email


def check_sign_in(body: SignInBody) -> str:
    """The normalized email, or 422 listing the fields."""
    email = normalize_email(body.email)
    problems = []
    if email is None:
        problems.append({"loc": ("body", "email"), "msg": "not a valid email address"})
    if not body.password:
        problems.append({"loc": ("body", "password"), "msg": "required"})
    if problems:
        raise RequestValidationError([{**p, "type": "value_error"} for p in problems])
    assert email is not None
    return email


def check_sign_up(body: SignUpBody, min_length: int) -> tuple[str, str | None]:
    """The normalized email and display name, or 422 listing every problem."""
    email = normalize_email(body.email)
    problems = []
    if email is None:
        problems.append({"loc": ("body", "email"), "msg": "not a valid email address"})
    for problem in password_problems(body.password, min_length, email):
        problems.append({"loc": ("body", "password"), "msg": f"the password {problem}"})
    name = body.name.strip() if body.name else None
    if name and any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        problems.append({"loc": ("body", "name"), "msg": "must not contain control characters"})
    if problems:
        raise RequestValidationError([{**p, "type": "value_error"} for p in problems])
    assert email is not None
    return email, name or None


def safe_callback(url: str | None, default: str = "/") -> str:
    """A same-site path to go to after a form: never another site (open redirect)."""
    if not url:
        return default
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith(("//", "/\\")):
        return default
    if any(ord(c) < 32 or c == "\\" for c in url):
        return default
    return url
