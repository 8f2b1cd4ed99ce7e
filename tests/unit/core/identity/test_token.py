"""The token form: made by PyJWT, parsed strictly, interoperable, and nothing else accepted."""

from __future__ import annotations

import base64
import json

import pytest

from ringfence.core.identity.claims import Claims, agent_id, id_problem, trust_domain_of
from ringfence.core.identity.token import (
    ALG,
    TYP,
    confirmation,
    digest,
    encode,
    jwk,
    jws,
    parse,
    public_key_of,
    thumbprint,
)
from ringfence.errors import IdentityError

from ._support import PLANNER, RING, T0, claims_of, kid, pub, root


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def malformed(token: str) -> str:
    with pytest.raises(IdentityError) as info:
        parse(token)
    assert info.value.code == "credential.malformed"
    return info.value.message


class TestAgentIds:
    def test_agent_id(self) -> None:
        assert (
            agent_id("corp.example", "team/planner") == "spiffe://corp.example/agent/team/planner"
        )
        assert trust_domain_of("spiffe://corp.example/agent/x") == "corp.example"

    @pytest.mark.parametrize(
        "text",
        [
            "spiffe://Corp/agent/x",  # upper-case trust domain
            "spiffe://corp/agent/",
            "spiffe://corp/agent/a//b",
            "spiffe://corp/agent/a/../b",
            "spiffe://corp/agent/./b",
            "spiffe://corp/user/x",
            "https://corp/agent/x",
            "spiffe://corp/agent/a b",
            "spiffe://corp/agent/" + "a" * 2100,
        ],
    )
    def test_bad_ids(self, text: str) -> None:
        assert id_problem(text) is not None

    def test_bad_parts_raise(self) -> None:
        with pytest.raises(ValueError):
            agent_id("Corp", "x")
        with pytest.raises(ValueError):
            agent_id("corp", "../x")


class TestForm:
    def test_round_trip(self) -> None:
        token = root()
        link = parse(token)
        assert link.kid == kid(RING)
        assert link.claims.sub == "spiffe://corp.example/agent/planner"
        assert link.claims.exp == T0 + 900
        assert link.signed_by(RING.verify_key)
        assert not link.signed_by(PLANNER.verify_key)

    def test_header(self) -> None:
        header = json.loads(base64.urlsafe_b64decode(root().split(".")[0] + "=="))
        assert header == {"alg": ALG, "kid": kid(RING), "typ": TYP}

    def test_made_by_pyjwt(self) -> None:
        """PyJWT's own decoder (with our PyNaCl algorithm) verifies what we make."""
        out = jws().decode_complete(root(), RING.verify_key, algorithms=[ALG])
        assert json.loads(out["payload"])["jti"] == "root-0001"

    def test_interoperates_with_pyjwt_cryptography(self) -> None:
        """Any JOSE library verifies our tokens with the JWKS: here PyJWT's built-in EdDSA."""
        pytest.importorskip("cryptography")
        import jwt

        key = jwt.PyJWK(jwk(pub(RING)))
        claims = jwt.decode(
            root(),
            key,
            algorithms=["EdDSA"],
            audience="ringfence",
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
        assert claims["sub"].endswith("/planner")

    def test_jwk_and_thumbprint(self) -> None:
        key = jwk(pub(RING))
        assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "EdDSA"
        # RFC 7638: SHA-256 of the canonical members, in lexical order, no whitespace
        canonical = json.dumps(
            {"crv": "Ed25519", "kty": "OKP", "x": key["x"]}, separators=(",", ":")
        )
        import hashlib

        assert key["kid"] == b64(hashlib.sha256(canonical.encode()).digest())
        assert thumbprint(pub(RING)) == key["kid"]
        assert public_key_of(confirmation(pub(RING))) == pub(RING)

    def test_digest(self) -> None:
        assert len(digest("a.b.c")) == 43
        assert digest("a.b.c") != digest("a.b.d")


class TestMalformed:
    def test_parts(self) -> None:
        token = root()
        assert "3 parts" in malformed(token.rsplit(".", 1)[0])
        assert "3 parts" in malformed(token + ".x")

    def test_not_ascii_or_too_long(self) -> None:
        malformed(root() + "é")
        malformed("a" * 9000)

    @pytest.mark.parametrize("where", [0, 1, 2])
    def test_base64_alphabet_and_padding(self, where: int) -> None:
        parts = root().split(".")
        for bad in (parts[where] + "=", parts[where][:-1] + "+", parts[where][:-1] + "/", ""):
            tampered = parts.copy()
            tampered[where] = bad
            malformed(".".join(tampered))

    def test_non_canonical_trailing_bits(self) -> None:
        parts = root().split(".")
        sig = parts[2]  # 86 characters: the last carries 2 spare bits
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        parts[2] = sig[:-1] + alphabet[alphabet.index(sig[-1]) | 1]
        assert "canonical" in malformed(".".join(parts))

    @pytest.mark.parametrize(
        "header",
        [
            {"alg": "none", "kid": "k", "typ": TYP},
            {"alg": "HS256", "kid": "k", "typ": TYP},
            {"alg": "EdDSA", "kid": "k", "typ": "JWT"},
            {"alg": "EdDSA", "kid": "k", "typ": TYP, "crit": ["exp"]},
            {"alg": "EdDSA", "kid": "k", "typ": TYP, "jwk": {"kty": "OKP"}},
            {"alg": "EdDSA", "typ": TYP},
        ],
    )
    def test_header_must_be_exact(self, header: dict[str, object]) -> None:
        parts = root().split(".")
        parts[0] = b64(json.dumps(header).encode())
        malformed(".".join(parts))

    @pytest.mark.parametrize(
        "change",
        [
            {"admin": True},  # unknown claim
            {"aud": "ringfence"},  # a string, not a list
            {"aud": []},
            {"exp": "soon"},
            {"delegable": 99},
            {"budgets": {"max_calls": True}},
            {"jti": "short"},
        ],
    )
    def test_claims_must_decode(self, change: dict[str, object]) -> None:
        parts = root().split(".")
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=="))
        payload.update(change)
        parts[1] = b64(json.dumps(payload).encode())
        malformed(".".join(parts))

    def test_signature_length(self) -> None:
        parts = root().split(".")
        parts[2] = b64(b"x" * 63)
        assert "64 bytes" in malformed(".".join(parts))

    def test_encode_round_trips_every_field(self) -> None:
        claims = claims_of(root())
        assert isinstance(claims, Claims)
        assert parse(encode(claims, RING, kid(RING))).claims == claims
