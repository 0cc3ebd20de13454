"""Keep credentials out of what we record: params, tags, logged text and error messages.

Masks credentials in URIs (`https://user:***@host`, `https://***@host`), secret-looking query
parameters and `key=value` / `key: value` pairs (dict and JSON reprs too, quoted values whole),
`Authorization: Bearer ...` headers, AWS access key ids, and the literal values of secret
environment variables (AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_PASSWORD, ...) wherever they appear.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from cyclegan.urls import MASK, mask_userinfo

_SECRET_NAME = re.compile(
    r"pass(word|wd)?|secret|token|credential|api_?key|access_?key|private_?key|session_?key|authorization",
    re.I,
)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
# key=value, key: value, 'key': 'value', "key": "value"; a quoted value is masked up to its closing
# quote.
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<key>[\w.-]*(?:pass(?:word|wd)?|secret|token|credential|signature|api_?key|access_?key|authorization)[\w.-]*"
    r"|(?<![\w.-])(?:sig|pwd|pw|auth|sas)(?![\w.-]))"
    r"(?P<sep>['\"]?\s*[=:]\s*)(?:(?P<quote>['\"])(?P<quoted>(?:\\.|(?!(?P=quote))[^\n])*)(?P=quote)"
    r"|(?:(?P<scheme>Bearer|Basic|Token|Digest)\s+)?(?P<value>[^\s'\"&;,}]+))",
    re.I,
)
_AUTH_SCHEME = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+(?P<value>[A-Za-z0-9._~+/=-]{8,})")
# MLflow's own limits on params and tags.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def environ_snapshot() -> dict[str, str]:
    """A copy of os.environ that another thread changing it cannot break (MLflow's telemetry thread
    sets and unsets variables: iterating os.environ meanwhile raises KeyError or RuntimeError)."""
    for _ in range(100):
        try:
            keys = list(os.environ)
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
        values = {key: os.environ.get(key) for key in keys}
        return {key: value for key, value in values.items() if value is not None}
    return {}


@contextlib.contextmanager
def restored_environ(names: Iterable[str]) -> Iterator[None]:
    """Put back the variables `names` of os.environ as they were (set, or unset) when the block
    ends."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _env_secrets() -> list[str]:
    # Values of secret variables, longest first so that one containing another is masked whole.
    values = {v for k, v in environ_snapshot().items() if is_secret_name(k) and len(v) >= 4}
    return sorted(values, key=len, reverse=True)


def _masked_assignment(m: re.Match) -> str:
    if m["quote"]:
        return f"{m['key']}{m['sep']}{m['quote']}{MASK}{m['quote']}"
    return f"{m['key']}{m['sep']}{m['scheme'] + ' ' if m['scheme'] else ''}{MASK}"


def mask_text(text: str) -> str:
    """`text` with every credential we can recognise replaced by ***."""
    for secret in _env_secrets():
        text = text.replace(secret, MASK)
    text = mask_userinfo(text)
    text = _AWS_KEY_ID.sub(MASK, text)
    text = _SECRET_ASSIGNMENT.sub(_masked_assignment, text)
    return _AUTH_SCHEME.sub(lambda m: f"{m['scheme']} {MASK}", text)


def mask_value(name: str, value: Any) -> str:
    """A param or tag value as text, masked; a secret-named key hides its value entirely."""
    if value is None:
        return "None"
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value)
        if isinstance(value, (list, tuple))
        else str(value)
    )
    if is_secret_name(name.rsplit(".", 1)[-1]) and text:
        return MASK
    return mask_text(text)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: nested mappings become dotted keys, everything else stays."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def safe_params(values: Mapping[str, Any]) -> dict[str, str]:
    """Flattened, masked, MLflow-sized params (keys limited to the characters MLflow accepts)."""
    return {
        re.sub(r"[^\w\-./ :]", "_", key)[:250]: mask_value(key, value)[:MAX_PARAM_VALUE]
        for key, value in flatten(values).items()
    }
