"""Credentials inside URLs (`https://user:password@host`, `https://TOKEN@host`): masked before a URL
is shown or stored. The library's only masking; orchestrator.redact builds the rest on it."""

from __future__ import annotations

import re

MASK = "***"
# user:password@ — the password runs to the last '@' before the host (a raw '@' or spaces in it stay
# hidden); it cannot hold '/', which ends the authority.
_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/\s@'\"]*):(?P<password>[^/\n]*)@"
    r"(?=[\w.\-\[\]]+(?::\d+)?(?:[/\s?#'\"\]),;]|$))"
)
# TOKEN@ with no password: the user name is the secret.
_USER_ONLY = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/\s@'\"*]+)@")


def mask_userinfo(text: str) -> str:
    """`text` with the password (or, alone, the user name) of every URL in it replaced by ***."""
    text = _PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _USER_ONLY.sub(lambda m: f"{m['head']}{MASK}@", text)
