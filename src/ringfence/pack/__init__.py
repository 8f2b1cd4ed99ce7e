"""The default policy pack: a starting policy per tool family, for ``ringfence init``.

Each family (e-mail, messaging, calendar, files, web, payments, shell, repo, database,
cloud) is one YAML template beside this module, written from what its tools do: which
results carry outside content (``labels: [untrusted]``) or sensitive data, which calls send
data out, move money, destroy things or change privileges.  A ``baseline`` file with the
session-wide rules (runaway loops, a call cap) comes with every selection.

Organisation-specific values are parameters: the internal e-mail domains, the hosts HTTP
writes may go to, and numeric thresholds (:data:`SETTINGS`).  :func:`render` substitutes
them and returns file name → YAML text; load the result with :func:`ringfence.load_policy`
(a folder of these files loads as one policy: rule ids and tool names never collide).

    >>> from ringfence import pack
    >>> files = pack.render(["email", "web"], internal_domains=["corp.example"])
    >>> sorted(files)
    ['baseline.yaml', 'email.yaml', 'web.yaml']
"""

from __future__ import annotations

from ringfence.pack.render import (
    BASELINE,
    DEFAULT_ALLOWED_HOSTS,
    DEFAULT_INTERNAL_DOMAINS,
    FAMILIES,
    SETTINGS,
    Setting,
    families,
    render,
    template,
)

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
