"""Keep credentials out of what we record: params, tags, logged text and error messages.

Masks passwords in URIs (`https://user:***@host`), secret-looking query parameters and
`key=value` pairs, AWS access key ids, and the literal values of secret environment
variables (AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_PASSWORD, ...) wherever they appear.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
_SECRET_NAME = re.compile(r"pass(word|wd)?|secret|token|credential|api_?key|access_?key|private_?key|session_?key|authorization", re.I)
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*):(?P<password>[^@/\s]+)@")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<key>[\w.-]*(?:pass(?:word|wd)?|secret|token|credential|signature|api_?key|access_?key)[\w.-]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<quote>['\"]?)(?P<value>[^\s'\"&;,}]+)", re.I)
# MLflow's own limits on params and tags.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def _env_secrets() -> list[str]:
    # Values of secret variables, longest first so that one containing another is masked whole.
    values = {v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= 4}
    return sorted(values, key=len, reverse=True)


def mask_text(text: str) -> str:
    """`text` with every credential we can recognise replaced by ***."""
    for secret in _env_secrets():
        text = text.replace(secret, MASK)
    text = _URI_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _AWS_KEY_ID.sub(MASK, text)
    return _SECRET_ASSIGNMENT.sub(lambda m: f"{m['key']}{m['sep']}{m['quote']}{MASK}", text)


def mask_value(name: str, value: Any) -> str:
    """A param or tag value as text, masked; a secret-named key hides its value entirely."""
    if value is None:
        return "None"
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
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
    return {re.sub(r"[^\w\-./ :]", "_", key)[:250]: mask_value(key, value)[:MAX_PARAM_VALUE]
            for key, value in flatten(values).items()}
