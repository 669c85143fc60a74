"""Database URLs (setting ``database.url``): validate, normalise and redact, never echoing a password.

Users write a PostgreSQL URL (``postgresql://user:password@host:5432/db``, the password possibly in
``?password=``) or a libpq keyword string (``host=h user=u password=p dbname=d``). :func:`normalise_database_url`
turns any of them into one URL form with the user and password percent-encoded in the authority and no
password in the query, so:

* every consumer (psycopg, SQLAlchemy) reads the same credentials: libpq splits ``user:pa@ss@host`` at the
  first ``@`` (and then reports "failed to resolve host 'ss@host'", leaking half the password), Python's
  ``urlsplit`` at the last one; after normalisation the ``@`` is ``%40`` and both agree;
* there is one place a password can sit, which :func:`redact_database_url` masks and
  :func:`database_password` finds for the log masker.

Errors are :class:`~pulse.errors.ConfigError` naming the setting, and never include the value itself.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from pulse.errors import ConfigError

SCHEMES = ("postgresql", "postgres")


def normalise_database_url(raw: str, key: str = "database.url") -> str:
    """``raw`` as ``postgresql://user:password@host:port/db?options`` (credentials percent-encoded), or ``""``."""
    text = raw.strip()
    if not text:
        return ""
    if "://" not in text:
        return _from_keywords(text, key)
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        reason = "bad IPv6 host in brackets" if "IPv6" in str(exc) else "the port must be a number 1-65535"
        raise ConfigError(f"setting {key}: not a valid PostgreSQL URL ({reason})") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"setting {key}: expected postgresql://user:password@host:port/database "
            f"or a libpq keyword string, not a {parts.scheme or 'scheme-less'} URL"
        )
    if port == 0:
        raise ConfigError(f"setting {key}: not a valid PostgreSQL URL (the port must be a number 1-65535)")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    query = parse_qsl(parts.query, keep_blank_values=True)
    for name, value in query:
        if name == "password":  # libpq: a query parameter overrides the authority
            password, colon = value, ":"
        elif name == "user":
            user, at = value, "@"
    options = [(n, v) for n, v in query if n not in ("password", "user")]
    creds = ""
    if at or user:
        creds = quote(unquote(user), safe="") + (":" + quote(unquote(password), safe="") if colon else "") + "@"
    return _url(creds + hostport, parts.path, urlencode(options))


def _from_keywords(text: str, key: str) -> str:
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = {k: str(v) for k, v in conninfo_to_dict(text).items()}
    except ProgrammingError:
        # libpq's message quotes the string it choked on, which may be the password: not repeated here
        raise ConfigError(
            f"setting {key}: neither a postgresql:// URL nor a valid libpq keyword string (key=value pairs)"
        ) from None
    user, password = params.pop("user", ""), params.pop("password", None)
    host, port, dbname = params.pop("host", ""), params.pop("port", ""), params.pop("dbname", "")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError(f"setting {key}: port must be a number 1-65535")
    if "/" in host or "," in host:  # a socket directory or a host list: as a query parameter
        params["host"], host = host, ""
    elif ":" in host:
        host = f"[{host}]"
    creds = ""
    if user or password is not None:
        creds = quote(user, safe="") + (":" + quote(password, safe="") if password is not None else "") + "@"
    netloc = creds + host + (f":{port}" if port else "")
    return _url(netloc, "/" + quote(dbname, safe="") if dbname else "", urlencode(params))


def _url(netloc: str, path: str, query: str) -> str:
    # by hand: urlunsplit drops an empty authority ("postgresql:///db" would lose its "//")
    return f"postgresql://{netloc}{path}" + (f"?{query}" if query else "")


def database_password(url: str) -> str:
    """The password of a normalised URL (decoded), or ``""``."""
    userinfo, at, _ = urlsplit(url).netloc.rpartition("@")
    return unquote(userinfo.partition(":")[2]) if at else ""


def redact_database_url(url: str) -> str:
    """A normalised URL with its password as ``***``: ``postgresql://u:***@h/db``."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not (at and colon):
        return url
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))
