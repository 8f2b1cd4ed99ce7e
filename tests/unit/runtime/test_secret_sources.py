"""Secret sources: environment variables, memory, chains."""

from __future__ import annotations

from ringfence.runtime.secrets import (
    ChainSource,
    EnvSource,
    MemorySource,
    SecretSource,
    is_secret_env,
)


def test_env_source_maps_names_to_variables() -> None:
    env = {
        "RINGFENCE_SECRET_STRIPE_KEY": "sk_live_x",
        "RINGFENCE_SECRET_EMPTY": "",
        "RINGFENCE_SECRET_lower": "ignored: not upper case",
        "RINGFENCE_SECRET_BAD-NAME": "ignored",
        "RINGFENCE_SECRETS_KEY": "not a secret value",
        "HOME": "/root",
    }
    source = EnvSource(environ=env)
    assert isinstance(source, SecretSource)
    assert source.names() == ["stripe_key"]
    assert source.get("stripe_key") == "sk_live_x"
    assert source.get("empty") is None and source.get("home") is None
    assert source.get("Stripe_Key") is None  # not a secret name


def test_env_source_reads_at_every_call() -> None:
    env: dict[str, str] = {}
    source = EnvSource("APP_SECRET_", environ=env)
    assert source.get("token_a") is None
    env["APP_SECRET_TOKEN_A"] = "v1-abcdefgh"
    assert source.get("token_a") == "v1-abcdefgh"
    env["APP_SECRET_TOKEN_A"] = "v2-abcdefgh"
    assert source.get("token_a") == "v2-abcdefgh"


def test_memory_source() -> None:
    source = MemorySource({"a": "1234"})
    source.set("b", "5678")
    assert source.names() == ["a", "b"]
    source.remove("a")
    source.remove("a")
    assert source.get("a") is None and source.get("b") == "5678"


def test_chain_source_first_wins() -> None:
    chain = ChainSource(MemorySource({"a": "from-env"}), MemorySource({"a": "x", "b": "from-file"}))
    assert chain.get("a") == "from-env" and chain.get("b") == "from-file"
    assert chain.get("c") is None
    assert chain.names() == ["a", "b"]


def test_secret_variables_are_recognised_for_stripping_from_child_processes() -> None:
    assert is_secret_env("RINGFENCE_SECRET_STRIPE_KEY")
    assert is_secret_env("RINGFENCE_SECRETS_KEY")
    assert not is_secret_env("PATH") and not is_secret_env("RINGFENCE_DATA")
