"""The sign-in and sign-up pages: small HTML forms that post to the API, no script.

`?callbackUrl=` (a path on this site) is where the form goes once signed in;
`?error=` shows one of a fixed set of messages (never text from the URL).
"""

from __future__ import annotations

from html import escape
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from ..deps import get_settings
from ..settings import Settings
from .forms import safe_callback

router = APIRouter(include_in_schema=False)

MESSAGES = {
    "CredentialsSignin": "Wrong email or password.",
    "TooManyAttempts": "Too many attempts. Wait a few minutes and try again.",
    "InvalidInput": "Check the email address and the password rules below.",
    "EmailTaken": "An account with this email exists. Sign in instead.",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;background:#f6f6f7;color:#111;margin:0}
main{max-width:22rem;margin:10vh auto;background:#fff;padding:2rem;border-radius:12px;
box-shadow:0 1px 3px #0002}h1{font-size:1.4rem;margin:0 0 1rem}
label{display:block;margin:.8rem 0 .2rem;font-size:.9rem}
input{width:100%;box-sizing:border-box;padding:.55rem;border:1px solid #ccc;border-radius:8px;
font:inherit}button{width:100%;margin-top:1.2rem;padding:.6rem;border:0;border-radius:8px;
background:#111;color:#fff;font:inherit;cursor:pointer}button.alt{background:#e8e8ea;color:#111}
.error{background:#fde8e8;color:#8a1c1c;padding:.6rem;border-radius:8px}
.hint{color:#666;font-size:.85rem}p.switch{text-align:center;font-size:.9rem}
"""


def _page(title: str, body: str) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    return HTMLResponse(html, headers=_HEADERS)


def _error(code: str | None) -> str:
    message = MESSAGES.get(code or "")
    if code and message is None:
        message = "Something went wrong. Try again."
    return f'<p class="error" role="alert">{escape(message)}</p>' if message else ""


def _hidden(callback: str) -> str:
    return f'<input type="hidden" name="callbackUrl" value="{escape(callback)}">'


def _switch(path: str, callback: str) -> str:
    return escape(f"{path}?{urlencode({'callbackUrl': callback})}")


Text = Annotated[str | None, Query(max_length=2048)]


@router.get("/signin", response_class=HTMLResponse)
def signin_page(
    settings: Annotated[Settings, Depends(get_settings)],
    callbackUrl: Text = None,
    error: Text = None,
) -> HTMLResponse:
    callback = safe_callback(callbackUrl)
    guest = (
        f'<form method="post" action="/api/auth/guest">{_hidden(callback)}'
        f'<button class="alt" type="submit">Continue as a guest</button></form>'
        if settings.auth_guests
        else ""
    )
    signup = (
        f'<p class="switch">No account? <a href="{_switch("/signup", callback)}">Sign up</a></p>'
        if settings.auth_signup
        else ""
    )
    return _page(
        "Sign in",
        f"<h1>Sign in</h1>{_error(error)}"
        f'<form method="post" action="/api/auth/signin">{_hidden(callback)}'
        f'<label for="email">Email</label>'
        f'<input id="email" name="email" type="email" autocomplete="email" required autofocus>'
        f'<label for="password">Password</label>'
        f'<input id="password" name="password" type="password" '
        f'autocomplete="current-password" required>'
        f'<button type="submit">Sign in</button></form>{guest}{signup}',
    )


@router.get("/signup", response_class=HTMLResponse)
def signup_page(
    settings: Annotated[Settings, Depends(get_settings)],
    callbackUrl: Text = None,
    error: Text = None,
) -> HTMLResponse:
    callback = safe_callback(callbackUrl)
    if not settings.auth_signup:
        return _page("Sign up", "<h1>Sign up</h1><p>Sign-up is closed.</p>")
    minimum = settings.auth_password_min_length
    return _page(
        "Sign up",
        f"<h1>Create an account</h1>{_error(error)}"
        f'<form method="post" action="/api/auth/signup">{_hidden(callback)}'
        f'<label for="name">Name <span class="hint">(optional)</span></label>'
        f'<input id="name" name="name" autocomplete="name" maxlength="200">'
        f'<label for="email">Email</label>'
        f'<input id="email" name="email" type="email" autocomplete="email" required>'
        f'<label for="password">Password</label>'
        f'<input id="password" name="password" type="password" autocomplete="new-password" '
        f'minlength="{minimum}" required>'
        f'<p class="hint">At least {minimum} characters, at most 72 bytes.</p>'
        f'<button type="submit">Sign up</button></form>'
        f'<p class="switch">Have an account? <a href="{_switch("/signin", callback)}">'
        f"Sign in</a></p>",
    )
