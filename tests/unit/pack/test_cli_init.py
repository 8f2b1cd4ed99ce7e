"""``ringfence init``: writes the pack, proves it loads, refuses to overwrite without --force,
and rejects bad families and parameters with exit code 2."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import ringfence
from ringfence import pack
from ringfence.cli.main import cli


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["init", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_writes_every_family_by_default_and_loads_it(tmp_path: Path) -> None:
    out = tmp_path / "policy"
    code, text = run(
        "--out", str(out), "--internal-domain", "corp.example", "--allow-host", "api.corp.example"
    )
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["baseline.yaml", *(f"{f}.yaml" for f in pack.families())]
    )
    for family in pack.families():
        assert f"{family}.yaml" in text
    assert "ok: loads as one policy" in text
    assert "placeholders" not in text
    policy = ringfence.load_policy(out)
    assert len(policy.tools) == 37
    assert "corp\\.example" in (out / "email.yaml").read_text()
    assert "'host:api.corp.example'" in (out / "web.yaml").read_text()


def test_writes_the_chosen_families_and_warns_about_placeholders(tmp_path: Path) -> None:
    code, text = run("--out", str(tmp_path), "--family", "email", "--family", "web")
    assert code == 0, text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline.yaml", "email.yaml", "web.yaml"]
    assert "email.yaml       4 tools, 9 rules" in text
    assert "note: placeholders in use" in text


def test_all_flag(tmp_path: Path) -> None:
    code, _ = run("--out", str(tmp_path), "--all")
    assert code == 0
    assert len(list(tmp_path.glob("*.yaml"))) == len(pack.families()) + 1


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    (tmp_path / "email.yaml").write_text("# mine\n")
    code, text = run("--out", str(tmp_path), "--family", "email")
    assert code == 1
    assert "email.yaml already exist" in text and "--force" in text
    assert (tmp_path / "email.yaml").read_text() == "# mine\n"
    assert not (tmp_path / "baseline.yaml").exists()  # nothing written at all


def test_force_overwrites(tmp_path: Path) -> None:
    (tmp_path / "email.yaml").write_text("# mine\n")
    code, text = run(
        "--out", str(tmp_path), "--family", "email", "--force", "--set", "max_emails=5"
    )
    assert code == 0, text
    assert "max_emails = 5" in (tmp_path / "email.yaml").read_text()


def test_mentions_other_policy_files_in_the_folder(tmp_path: Path) -> None:
    (tmp_path / "local.yaml").write_text("version: 1\nrules: [{id: x, effect: deny}]\n")
    code, text = run("--out", str(tmp_path), "--family", "cloud")
    assert code == 0
    assert "also holds local.yaml" in text


def test_bad_family_exits_2(tmp_path: Path) -> None:
    code, text = run("--out", str(tmp_path), "--family", "mail")
    assert code == 2
    assert "'mail' is not one of" in text
    assert list(tmp_path.iterdir()) == []


def test_family_and_all_together_exit_2(tmp_path: Path) -> None:
    code, text = run("--out", str(tmp_path), "--family", "web", "--all")
    assert code == 2
    assert "not both" in text


def test_bad_parameters_exit_2(tmp_path: Path) -> None:
    for args, message in [
        (("--internal-domain", "not a domain"), "input.pack.domain"),
        (("--allow-host", "https://api.example.com/"), "input.pack.host"),
        (("--set", "max_emails"), "NAME=NUMBER"),
        (("--set", "max_emails=lots"), "NAME=NUMBER"),
        (("--set", "max_mails=3"), "input.pack.setting"),
        (("--set", "max_calls=0"), "input.pack.setting"),
    ]:
        code, text = run("--out", str(tmp_path), *args)
        assert (code, message in text) == (2, True), (args, text)
    assert list(tmp_path.iterdir()) == []


def test_help_lists_the_options() -> None:
    code, text = run("--help")
    assert code == 0
    for option in (
        "--family",
        "--all",
        "--out",
        "--internal-domain",
        "--allow-host",
        "--set",
        "--force",
    ):
        assert option in text
