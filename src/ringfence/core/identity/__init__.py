"""Agent identity, pure parts: agent ids, credential claims, scopes, tokens, delegation.

* :mod:`.claims` — SPIFFE-style agent ids and the claims of a credential;
* :mod:`.scopes` — tool and resource patterns: matching, and exact "child ⊆ parent";
* :mod:`.token` — the JWS (JWT, EdDSA) form: made by PyJWT, parsed strictly here;
* :mod:`.chain` — narrowing checks and verification of a chain up to a trusted root.

No I/O, no clock, no randomness: keys, times and credential ids come in as arguments.
The key ring, the registry and the caching verifier are in :mod:`ringfence.runtime.identity`.
Nothing is imported here, so that the policy parser can read :mod:`.claims` without
loading PyJWT and PyNaCl.
"""
