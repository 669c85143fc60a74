"""Asking the availability Lambda (``lambda/availability``): three ways, one answer (its JSON report).

* :class:`BotoInvoker` — ``lambda:InvokeFunction`` through boto3 (``monitor.lambda_function``, region and
  credentials from settings or the standard AWS chain). A ``FunctionError`` (the function raised), a
  4xx/5xx-style body, throttling (``TooManyRequestsException``) and timeouts become :class:`LambdaError`.
* :class:`UrlInvoker` — ``GET`` on the function URL, signed with SigV4 for service ``lambda`` (the template's
  ``AuthType: AWS_IAM``), credentials from the AWS chain.
* :class:`LocalInvoker` — the handler file run in this process (development and tests: the same code AWS runs).

Each takes the event (``{"instruments": [...]}``) and returns the report dict, or raises :class:`LambdaError`
(``retryable`` says whether asking again may help). Secrets (credentials) never appear in messages.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from pulse.errors import ConfigError, VenueError

_THROTTLED = frozenset({"TooManyRequestsException", "ThrottlingException", "EC2ThrottledException"})
_RETRYABLE_CODES = _THROTTLED | {"ServiceException", "ResourceNotReadyException", "ResourceConflictException"}


class LambdaError(VenueError):
    """The availability Lambda did not give a report."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Invoker(Protocol):
    name: str

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]: ...


def _report(raw: bytes | str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise LambdaError(f"{where}: the answer is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise LambdaError(f"{where}: the answer is not a JSON object")
    status = doc.get("statusCode", 200)
    if isinstance(status, int) and status >= 400:
        raise LambdaError(f"{where}: HTTP-style {status}: {doc.get('error', '?')}", retryable=status >= 500)
    if not isinstance(doc.get("instruments"), dict):
        raise LambdaError(f"{where}: the answer has no 'instruments' report")
    return doc


class BotoInvoker:
    """``invoke`` (RequestResponse) through a boto3 Lambda client (given, or made from the AWS chain)."""

    def __init__(self, function_name: str, *, region: str = "", client: Any = None, timeout_s: float = 40) -> None:
        if not function_name:
            raise ConfigError("monitor.lambda_function is empty")
        self.function_name = function_name
        self.name = f"lambda {function_name}"
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(read_timeout=timeout_s, connect_timeout=5, retries={"max_attempts": 1, "mode": "standard"})
            client = boto3.client("lambda", region_name=region or None, config=config)
        self.client = client

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self.client.invoke(
                FunctionName=self.function_name, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            message = exc.response.get("Error", {}).get("Message", "")
            kind = "throttled" if code in _THROTTLED else "refused"
            raise LambdaError(f"{self.name}: {kind}: {code}: {message}", retryable=code in _RETRYABLE_CODES) from None
        except BotoCoreError as exc:  # timeouts, connection errors, no credentials or region
            raise LambdaError(f"{self.name}: {type(exc).__name__}: {exc}") from None
        payload = resp["Payload"].read()
        if resp.get("FunctionError"):
            raise LambdaError(f"{self.name}: the function failed ({resp['FunctionError']}): {payload[:300]!r}")
        return _report(payload, self.name)


class UrlInvoker:
    """``GET`` on the function URL, SigV4-signed (service ``lambda``), instruments in the query string."""

    def __init__(self, url: str, *, region: str = "", session: Any = None, timeout_s: float = 40) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.netloc:
            raise ConfigError(f"monitor.function_url {url!r} is not an https URL")
        self.url = url.rstrip("/") + "/"
        self.name = f"function URL {parts.netloc}"
        self.region = region or (parts.netloc.split(".")[2] if parts.netloc.count(".") >= 4 else "")
        if not self.region:
            raise ConfigError("monitor.lambda_region is needed to sign requests to this function URL")
        self.session = session
        self.timeout_s = timeout_s

    def request(self, event: dict[str, Any]) -> urllib.request.Request:
        """The signed request (separate, so a test can check the signature's scope)."""
        import botocore.session
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        session = self.session or botocore.session.get_session()
        credentials = session.get_credentials()
        if credentials is None:
            raise LambdaError(f"{self.name}: no AWS credentials found (the standard chain)", retryable=False)
        query = {k: ",".join(v) if isinstance(v, list) else str(v) for k, v in event.items()}
        url = self.url + ("?" + urllib.parse.urlencode(query) if query else "")
        aws = AWSRequest(method="GET", url=url, headers={"accept": "application/json"})
        SigV4Auth(credentials.get_frozen_credentials(), "lambda", self.region).add_auth(aws)
        return urllib.request.Request(url, headers=dict(aws.headers.items()), method="GET")

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(self.request(event), timeout=self.timeout_s) as resp:  # https, checked
                body = resp.read()
        except urllib.error.HTTPError as exc:
            retry = exc.code in (429,) or exc.code >= 500
            raise LambdaError(f"{self.name}: HTTP {exc.code}", retryable=retry) from None
        except OSError as exc:
            raise LambdaError(f"{self.name}: {exc}") from None
        return _report(body, self.name)


class LocalInvoker:
    """The handler file, loaded by path and called in process with a 30 s budget (no AWS needed)."""

    def __init__(self, path: str | Path) -> None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"monitor.local_handler {file} is not a file")
        spec = importlib.util.spec_from_file_location(f"pulse_local_lambda_{abs(hash(file))}", file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        self.handler = module.lambda_handler
        self.name = f"local handler {file.name}"

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            out = self.handler(event, None)
        except Exception as exc:  # the handler promises never to raise; if it does, say so
            raise LambdaError(f"{self.name}: {type(exc).__name__}: {exc}") from None
        return _report(json.dumps(out), self.name)


def invoker_from_settings(monitor: Any) -> Invoker:
    """The invoker the ``[monitor]`` settings name (exactly one of function, URL, local handler)."""
    chosen = [k for k in ("lambda_function", "function_url", "local_handler") if getattr(monitor, k)]
    if len(chosen) != 1:
        raise ConfigError(
            "set exactly one of monitor.lambda_function, monitor.function_url and monitor.local_handler"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if chosen[0] == "lambda_function":
        return BotoInvoker(monitor.lambda_function, region=monitor.lambda_region)
    if chosen[0] == "function_url":
        return UrlInvoker(monitor.function_url, region=monitor.lambda_region)
    return LocalInvoker(monitor.local_handler)
