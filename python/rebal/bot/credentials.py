"""API keys: from the environment or a file only its owner can read, and
never in a log line, an exception message or an event.

`Credentials` prints as `Credentials(api_key='***', secret='***')`;
`redact` takes them (and request signatures) out of any text that came back
from an exchange library before it is logged or raised.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rebal.exceptions import CredentialsError

__all__ = ["Credentials", "load_credentials", "redact", "RedactingFilter", "keep_out_of_logs"]

_SIGNED = re.compile(r"([?&](?:signature|sign|apiKey|api_key|secret)=)[^&\s\"']*", re.IGNORECASE)


@dataclass(frozen=True)
class Credentials:
    api_key: str = field(repr=False)
    secret: str = field(repr=False)
    password: str | None = field(default=None, repr=False)
    """Some exchanges (OKX, KuCoin) also want a passphrase."""
    source: str = ""
    """Where they were read from (an environment variable's name or a path)."""

    def __repr__(self) -> str:
        return f"Credentials(api_key='***', secret='***', source={self.source!r})"

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.api_key, self.secret, self.password) if s)

    def ccxt(self) -> dict[str, str]:
        """The fields of a ccxt exchange's constructor."""
        out = {"apiKey": self.api_key, "secret": self.secret}
        if self.password:
            out["password"] = self.password
        return out


def load_credentials(exchange: str, path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Credentials:
    """Keys for `exchange` from `path` (TOML or JSON with api_key / secret
    [/ password]; the file must not be readable by group or others), else from
    `REBAL_<EXCHANGE>_API_KEY` / `_SECRET` / `_PASSWORD`, else from
    `REBAL_API_KEY` / `REBAL_API_SECRET`. A `CredentialsError` says where
    they were looked for, never what they are."""
    environ = os.environ if env is None else env
    if path is not None:
        return _from_file(Path(path))
    for prefix in (f"REBAL_{exchange.upper()}_", "REBAL_"):
        key, secret = environ.get(prefix + "API_KEY"), environ.get(prefix + "API_SECRET") or environ.get(prefix + "SECRET")
        if key and secret:
            return Credentials(key, secret, environ.get(prefix + "PASSWORD"), source=prefix + "API_KEY")
    name = exchange.upper()
    raise CredentialsError(
        f"credentials: no API keys for {exchange}; set REBAL_{name}_API_KEY and REBAL_{name}_API_SECRET, "
        "pass --keys FILE (readable only by you), or run with --paper",
        field="credentials",
        value=exchange,
    )


def _from_file(path: Path) -> Credentials:
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise CredentialsError(f"credentials: cannot read {path} ({e.strerror})", field="credentials", value=str(path)) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(
            f"credentials: {path} can be read by others (mode {stat.filemode(mode)}); run chmod 600 {path}",
            field="credentials",
            value=str(path),
        )
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except ValueError:
        # The parser's message may quote the file's text: say only where.
        raise CredentialsError(f"credentials: {path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}", field="credentials", value=str(path)) from None
    key, secret = data.get("api_key") or data.get("apiKey"), data.get("secret") or data.get("api_secret")
    if not (isinstance(key, str) and isinstance(secret, str) and key and secret):
        raise CredentialsError(f"credentials: {path} needs api_key and secret", field="credentials", value=str(path))
    password = data.get("password")
    return Credentials(key, secret, password if isinstance(password, str) else None, source=str(path))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the given secrets and without signed query values."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return _SIGNED.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """Takes secrets out of every record it sees. On a handler it cleans all
    that handler emits; on a logger, all that logger creates."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = tuple(s for s in secrets if s)

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(dict.fromkeys((*self.secrets, *(s for s in secrets if s))))

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


# ccxt logs every request's headers at DEBUG, the API key among them; the
# filter sits on the loggers that create those records, so no handler
# anywhere (a host's, pytest's) ever receives the key.
_LIBRARY_LOGGERS = ("ccxt.base.exchange", "ccxt.async_support.base.exchange", "urllib3.connectionpool", "rebal.bot", "rebal.venue")
_LIBRARY_FILTER = RedactingFilter()


def keep_out_of_logs(secrets: Iterable[str]) -> None:
    """Redacts `secrets` from every record ccxt, urllib3 and rebal log."""
    _LIBRARY_FILTER.add(secrets)
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if _LIBRARY_FILTER not in logger.filters:
            logger.addFilter(_LIBRARY_FILTER)
