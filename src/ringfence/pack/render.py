"""Render the pack's YAML templates with an organisation's parameters.

Templates hold ``{{name}}`` placeholders.  Lists (internal domains, allowed hosts) are
validated against a strict host-name syntax before they are written into YAML, regular
expressions and CEL string literals, so a parameter can never change a rule's structure;
numbers come from :data:`SETTINGS` and must be whole numbers within their bounds.  A template
naming a placeholder this module does not know is an error, never left in the output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from ringfence.errors import InputError

__all__ = [
    "BASELINE",
    "DEFAULT_ALLOWED_HOSTS",
    "DEFAULT_INTERNAL_DOMAINS",
    "FAMILIES",
    "SETTINGS",
    "Setting",
    "families",
    "render",
    "template",
]

BASELINE = "baseline"
"""The file rendered with every selection: session-wide rules for all tools."""

FAMILIES: Mapping[str, str] = {
    "email": "read_inbox, read_email, send_email, forward_email",
    "messaging": "list_channels, read_channel, post_message, send_dm",
    "calendar": "list_events, create_event, delete_event",
    "files": "read_file, write_file, delete_file, list_dir, share_file",
    "web": "fetch_url, web_search, http_request",
    "payments": "get_balance, list_transactions, send_money, add_payee",
    "shell": "run_shell, run_python",
    "repo": "git_push, create_pr, read_ci_secret, update_ci_config",
    "database": "query_db, export_table, update_customer, delete_customer",
    "cloud": "list_instances, delete_instance, set_iam_policy, create_access_key",
}
"""Family name → the tools its template declares, in the order ``init`` writes them."""

DEFAULT_INTERNAL_DOMAINS = ("example.com",)
"""Placeholder internal e-mail domain: replace it with the organisation's own."""
DEFAULT_ALLOWED_HOSTS = ("api.example.com",)
"""Placeholder host that HTTP writes may go to: replace it with the real APIs."""


@dataclass(frozen=True)
class Setting:
    """A numeric template parameter: its default, bounds, meaning and where it is used."""

    default: int
    help: str
    family: str
    minimum: int = 1
    maximum: int = 1_000_000_000


SETTINGS: Mapping[str, Setting] = {
    "max_repeats": Setting(3, "deny the same call (tool + arguments) after this many", BASELINE),
    "max_calls": Setting(500, "deny any call once a session has made this many", BASELINE),
    "max_emails": Setting(50, "e-mails sent or forwarded per session", "email"),
    "max_messages": Setting(100, "chat messages and DMs per session", "messaging"),
    "max_events": Setting(30, "calendar events created per session", "calendar"),
    "max_payments": Setting(10, "payments per session", "payments"),
    "payment_approval_above": Setting(
        1000,
        "a payment above this amount (any currency) needs approval, unless the user stated "
        "the amount and the IBAN",
        "payments",
        0,
    ),
    "payment_always_approve_above": Setting(
        10000, "a payment above this amount needs approval whoever stated it", "payments", 0
    ),
    "max_exports": Setting(3, "table exports per session", "database"),
}
"""Name → numeric parameter (``ringfence init --set name=value``)."""

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_HOST = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def families() -> list[str]:
    """The tool families, in the order ``ringfence init --all`` writes them."""
    return list(FAMILIES)


def template(name: str) -> str:
    """The raw text of template ``name`` (a family or :data:`BASELINE`), placeholders and all."""
    if name != BASELINE and name not in FAMILIES:
        raise InputError(
            f"unknown policy family {name!r} (families: {', '.join(FAMILIES)})",
            code="input.pack.family",
        )
    return resources.files(__package__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def _names(values: Sequence[str] | str, pattern: re.Pattern[str], what: str) -> list[str]:
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for raw in values:
        value = raw.strip().lower().rstrip(".") if isinstance(raw, str) else raw
        if not isinstance(value, str) or len(value) > 253 or not pattern.fullmatch(value):
            raise InputError(f"{raw!r} is not a valid {what}", code=f"input.pack.{what}")
        if value not in out:
            out.append(value)
    if not out:
        raise InputError(f"at least one {what} is needed", code=f"input.pack.{what}")
    return out


def _host_regex(host: str) -> str:
    if host.startswith("*."):
        return r"(?:[a-z0-9-]+\.)+" + re.escape(host[2:])
    return re.escape(host)


def _values(
    internal_domains: Sequence[str] | str,
    allowed_hosts: Sequence[str] | str,
    settings: Mapping[str, int] | None,
) -> dict[str, str]:
    domains = _names(internal_domains, _DOMAIN, "domain")
    hosts = _names(allowed_hosts, _HOST, "host")
    values = {
        "internal_domains": ", ".join(domains),
        # Recipients at an internal domain or any of its subdomains.
        "internal_re": r"@(?:[a-z0-9-]+\.)*(?:" + "|".join(map(re.escape, domains)) + ")$",
        "allowed_hosts": ", ".join(hosts),
        "allowed_host_globs": ", ".join(f"'host:{h}'" for h in hosts),
        "allowed_host_re": "^host:(?:" + "|".join(map(_host_regex, hosts)) + ")$",
    }
    chosen = dict(settings or {})
    for name in chosen:
        if name not in SETTINGS:
            raise InputError(
                f"unknown setting {name!r} (settings: {', '.join(SETTINGS)})",
                code="input.pack.setting",
            )
    for name, setting in SETTINGS.items():
        value = chosen.get(name, setting.default)
        if type(value) is not int or not setting.minimum <= value <= setting.maximum:
            raise InputError(
                f"setting {name} must be a whole number from {setting.minimum} to "
                f"{setting.maximum}, got {value!r}",
                code="input.pack.setting",
            )
        values[name] = str(value)
    return values


def _fill(name: str, text: str, values: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise InputError(
                f"template {name}.yaml names an unknown parameter {key!r}",
                code="input.pack.template",
            )
        return values[key]

    return _PLACEHOLDER.sub(substitute, text)


def render(
    families: Iterable[str],
    *,
    internal_domains: Sequence[str] | str = DEFAULT_INTERNAL_DOMAINS,
    allowed_hosts: Sequence[str] | str = DEFAULT_ALLOWED_HOSTS,
    settings: Mapping[str, int] | None = None,
) -> dict[str, str]:
    """File name → YAML text for ``families`` (plus ``baseline.yaml``), with the parameters
    filled in.  InputError (code ``input.pack.*``) for an unknown family or setting, an
    invalid domain or host name, or a setting out of bounds."""
    chosen = list(dict.fromkeys([families] if isinstance(families, str) else families))
    if not chosen:
        raise InputError("choose at least one policy family", code="input.pack.family")
    for name in chosen:
        if name not in FAMILIES:
            raise InputError(
                f"unknown policy family {name!r} (families: {', '.join(FAMILIES)})",
                code="input.pack.family",
            )
    values = _values(internal_domains, allowed_hosts, settings)
    ordered = [BASELINE, *(f for f in FAMILIES if f in chosen)]
    return {f"{name}.yaml": _fill(name, template(name), values) for name in ordered}
