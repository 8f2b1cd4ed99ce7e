"""Credential tokens: JWS compact serialisation (a JWT), Ed25519 (``alg`` EdDSA, RFC 8037).

Tokens are *made* by PyJWT (``PyJWS.encode``) with an EdDSA algorithm backed by PyNaCl
(libsodium), registered on a private ``PyJWS`` instance that knows no other algorithm.  Any
JOSE library verifies them with the public keys from the JWKS (tests check PyJWT's own
``cryptography``-backed EdDSA does).  A delegation chain travels as its tokens joined by
``~``, root first (the separator SD-JWT uses; it is not in the base64url alphabet).

Why PyJWT, and why this module parses tokens itself.  Measured on the project machine
(bench/identity.py, p50 of one verification of a 0.77 KB token): PyNaCl's Ed25519 verify
alone 39 µs, this module's parse + PyNaCl 44 µs; PyJWT ``PyJWS`` with the PyNaCl algorithm
70 µs, of which 28 µs is its per-character base64url alphabet check; PyJWT ``decode`` with
its ``cryptography`` EdDSA 120 µs; joserfc 1.8 101 µs (and it warns that ``EdDSA`` is
deprecated by RFC 9864, which names ``Ed25519``; PyJWT 2.15 does not know that name yet, so
``EdDSA`` is what interoperates); biscuit-python 0.4 66 µs for one block, 117 µs with one
attenuation block (Datalog attenuation would make "no broader than the parent" hold by
construction, but a widened child would be silently narrowed rather than refused with a
reason, budgets and expiry do not map onto it cleanly, and it is a pre-1.0 Rust extension).
The budget for a first verification is 60 µs, so verification here is a strict parser of
the one form PyJWT produces — exactly three unpadded canonical base64url segments, a header
of exactly ``alg``/``kid``/``typ`` with ``alg`` EdDSA, a 64-byte signature — followed by
PyNaCl's verify.  It accepts a subset of what PyJWT's ``PyJWS``
accepts for the same key (a Hypothesis test checks the two side by side), and there is no
algorithm negotiation at all: no ``none``, no HMAC-with-the-public-key confusion.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

import msgspec
from jwt import PyJWS
from jwt.algorithms import Algorithm
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ringfence.core.identity.claims import Claims, Confirmation, PublicJwk
from ringfence.errors import IdentityError

__all__ = [
    "ALG",
    "CHAIN_SEPARATOR",
    "MAX_TOKEN_BYTES",
    "TYP",
    "Link",
    "confirmation",
    "digest",
    "encode",
    "jwk",
    "parse",
    "public_key_of",
    "thumbprint",
]

ALG = "EdDSA"
TYP = "rf-agent+jwt"  # explicit typing (RFC 8725 §3.11): not mistaken for another kind of JWT
CHAIN_SEPARATOR = "~"
MAX_TOKEN_BYTES = 8192
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_INDEX = {c: i for i, c in enumerate(_B64)}


class _Header(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    alg: str
    kid: str
    typ: str


_decode_header = msgspec.json.Decoder(_Header).decode
_decode_claims = msgspec.json.Decoder(Claims).decode
_encode_claims = msgspec.json.Encoder().encode


class _NaclEdDSA(Algorithm):
    """EdDSA over Ed25519 with PyNaCl, for PyJWT.  Keys: a SigningKey, a VerifyKey, or the
    32-byte seed of a signing key."""

    def prepare_key(self, key: Any) -> Any:
        if isinstance(key, bytes):
            return SigningKey(key)
        if isinstance(key, SigningKey | VerifyKey):
            return key
        raise TypeError(f"an Ed25519 key is needed, not {type(key).__name__}")

    def sign(self, msg: bytes, key: Any) -> bytes:
        signature: bytes = key.sign(msg).signature
        return signature

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        if isinstance(key, SigningKey):
            key = key.verify_key
        try:
            key.verify(msg, sig)
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:
        raise NotImplementedError("use ringfence.core.identity.token.jwk")

    @staticmethod
    def from_jwk(jwk: Any) -> Any:
        raise NotImplementedError("use ringfence.core.identity.token.public_key_of")


_JWS = PyJWS(algorithms=[])
_JWS.register_algorithm(ALG, _NaclEdDSA())


def jws() -> PyJWS:
    """The PyJWT ``PyJWS`` instance tokens are made with (EdDSA via PyNaCl, nothing else)."""
    return _JWS


def encode(claims: Claims, key: SigningKey, kid: str) -> str:
    """Sign ``claims`` with ``key`` (whose key id is ``kid``): one compact JWS."""
    return _JWS.encode(
        _encode_claims(claims),
        bytes(key),
        algorithm=ALG,
        headers={"kid": kid, "typ": TYP},
    )


_TO_STANDARD = bytes.maketrans(b"-_+/", b"+/-_")  # "+" and "/" become invalid characters
_PAD = (b"", b"", b"==", b"=")
_SPARE = (0, 0, 0x0F, 0x03)  # bits past the last whole byte, by length % 4


def _b64(segment: bytes, what: str) -> bytes:
    """Strict base64url: the alphabet only, no padding, canonical trailing bits."""
    n = len(segment) % 4
    # The bits past the last whole byte must be zero, or two texts would decode the same.
    if not segment or n == 1 or b"=" in segment or _B64_INDEX.get(chr(segment[-1]), 0) & _SPARE[n]:
        raise IdentityError(f"{what} is not canonical base64url", code="credential.malformed")
    try:
        return binascii.a2b_base64(segment.translate(_TO_STANDARD) + _PAD[n], strict_mode=True)
    except (binascii.Error, ValueError):
        raise IdentityError(f"{what} is not base64url", code="credential.malformed") from None


_headers: dict[bytes, _Header] = {}  # a token's header segment → the header (few distinct)


class Link:
    """One parsed, not yet verified, token of a chain."""

    __slots__ = ("claims", "kid", "signature", "signed", "text")

    def __init__(
        self, text: str, kid: str, claims: Claims, signed: bytes, signature: bytes
    ) -> None:
        self.text = text
        self.kid = kid
        self.claims = claims
        self.signed = signed
        self.signature = signature

    def signed_by(self, key: VerifyKey) -> bool:
        """Whether the signature verifies with ``key``."""
        try:
            key.verify(self.signed, self.signature)
        except BadSignatureError:
            return False
        return True


def parse(token: str) -> Link:
    """Split and decode one compact JWS; IdentityError ``credential.malformed`` if it is not
    exactly the form :func:`encode` makes.  Nothing is verified yet."""
    if not token.isascii() or len(token) > MAX_TOKEN_BYTES:
        raise IdentityError("token is not ASCII or is too long", code="credential.malformed")
    raw = token.encode("ascii")
    parts = raw.split(b".")
    if len(parts) != 3:
        raise IdentityError("token is not a compact JWS (3 parts)", code="credential.malformed")
    header_b64, payload_b64, signature_b64 = parts
    try:
        header = _headers.get(header_b64)
        if header is None:
            header = _decode_header(_b64(header_b64, "header"))
            if header.alg != ALG or header.typ != TYP:
                raise IdentityError(
                    f"token header must have alg {ALG} and typ {TYP}", code="credential.malformed"
                )
            if len(_headers) >= 1024:
                _headers.clear()
            _headers[header_b64] = header
        claims = _decode_claims(_b64(payload_b64, "payload"))
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # ValidationError too
        raise IdentityError(f"token does not decode: {exc}", code="credential.malformed") from None
    signature = _b64(signature_b64, "signature")
    if len(signature) != 64:
        raise IdentityError("signature is not 64 bytes", code="credential.malformed")
    return Link(token, header.kid, claims, raw[: len(header_b64) + 1 + len(payload_b64)], signature)


def digest(token: str) -> str:
    """base64url (no padding) SHA-256 of a token: how a child names its parent."""
    raw = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unpadded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def jwk(public: bytes, *, kid: bool = True) -> dict[str, str]:
    """The public JWK of an Ed25519 key, with ``kid``, ``alg`` and ``use`` when ``kid``."""
    out = {"kty": "OKP", "crv": "Ed25519", "x": _unpadded(public)}
    if kid:
        out.update(kid=thumbprint(public), alg=ALG, use="sig")
    return out


def thumbprint(public: bytes) -> str:
    """The key id of an Ed25519 public key: its RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    canonical = '{"crv":"Ed25519","kty":"OKP","x":"' + _unpadded(public) + '"}'
    return _unpadded(hashlib.sha256(canonical.encode("ascii")).digest())


def confirmation(public: bytes) -> Confirmation:
    """The ``cnf`` claim binding ``public``."""
    return Confirmation(PublicJwk("OKP", "Ed25519", _unpadded(public)))


def public_key_of(cnf: Confirmation) -> bytes:
    """The 32 raw bytes of the key in a ``cnf`` claim; IdentityError if it is not one."""
    raw = _b64(cnf.jwk.x.encode("ascii", "replace"), "cnf key")
    if len(raw) != 32:
        raise IdentityError("cnf key is not an Ed25519 key", code="credential.malformed")
    return raw
