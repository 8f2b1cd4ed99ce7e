"""Launch specs for the MCP servers the integration tests drive.

Reference servers (software no one here wrote) come from the registries and are installed by
`scripts/setup-mcp-servers.sh` into `.cache/mcp-servers` (override: RINGFENCE_MCP_SERVERS_DIR):
  time        PyPI mcp-server-time        (tools get_current_time, convert_time)
  git         PyPI mcp-server-git         (git_status, git_log, ... on one repository)
  fetch       PyPI mcp-server-fetch       (fetch; needs the internet to call, so tests only list)
  filesystem  npm  @modelcontextprotocol/server-filesystem (read/write confined to its roots)
Fixture servers are ours, written with the SDK (fixtures/): rugpull, poisoned, misbehaving.

Every helper returns a `ServerSpec` (command list, env, cwd) that a gateway config or the SDK's
`StdioServerParameters` can take.  A reference server that is not installed raises
`ServerNotInstalledError` telling how to install it: missing setup fails, it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mcp.client.stdio import StdioServerParameters

REPO_ROOT = Path(__file__).resolve().parents[3]
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup-mcp-servers.sh"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CACHE_ENV = "RINGFENCE_MCP_SERVERS_DIR"

FILESYSTEM_ENTRY = Path("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js")


class ServerNotInstalledError(RuntimeError):
    """A reference MCP server is missing: run scripts/setup-mcp-servers.sh."""


@dataclass(frozen=True)
class ServerSpec:
    """How to start one stdio MCP server."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    """Extra variables, merged over the SDK's minimal inherited environment (HOME, PATH, ...)."""
    cwd: Path | None = None

    def stdio_parameters(self) -> StdioServerParameters:
        return StdioServerParameters(
            command=self.command[0], args=self.command[1:], env=self.env or None, cwd=self.cwd
        )


def cache_dir() -> Path:
    value = os.environ.get(CACHE_ENV)
    if not value:
        return REPO_ROOT / ".cache" / "mcp-servers"
    path = Path(value)
    return path if path.is_absolute() else REPO_ROOT / path


def _not_installed(what: str, missing: Path | str) -> ServerNotInstalledError:
    return ServerNotInstalledError(
        f"MCP reference server {what} is not installed ({missing} is missing). "
        f"Run `bash {SETUP_SCRIPT.relative_to(REPO_ROOT)}` from the repository root "
        f"(it installs into {cache_dir()})."
    )


def _python_server(name: str, module: str, args: list[str], cwd: Path | None = None) -> ServerSpec:
    # `python -m module` rather than the console script: a venv's scripts carry the venv's
    # absolute path in their shebang and break if the checkout moves; `python -m` does not.
    python = cache_dir() / "venv" / "bin" / "python"
    if not python.exists():
        raise _not_installed(name, python)
    if not list(
        (cache_dir() / "venv" / "lib").glob(f"python3*/site-packages/{module}/__init__.py")
    ):
        raise _not_installed(name, f"{module} in {cache_dir() / 'venv'}")
    return ServerSpec(name=name, command=[str(python), "-m", module, *args], cwd=cwd)


def time_server(local_timezone: str = "UTC") -> ServerSpec:
    """PyPI mcp-server-time, with a fixed local timezone so results do not depend on the host."""
    return _python_server(
        "time", "mcp_server_time", ["--local-timezone", local_timezone], cwd=cache_dir()
    )


def git_server(repository: Path) -> ServerSpec:
    """PyPI mcp-server-git, confined to `repository` (see `init_git_repo`)."""
    return _python_server(
        "git", "mcp_server_git", ["--repository", str(repository)], cwd=repository
    )


def fetch_server() -> ServerSpec:
    """PyPI mcp-server-fetch.  There is no internet here: list its tools, do not call them."""
    return _python_server("fetch", "mcp_server_fetch", [], cwd=cache_dir())


def filesystem_server(root: Path, *more_roots: Path) -> ServerSpec:
    """npm @modelcontextprotocol/server-filesystem, allowed to touch only `root` (and more_roots).

    Its cwd is `root`, so a relative path a client sends resolves inside the root.
    """
    entry = cache_dir() / "npm" / FILESYSTEM_ENTRY
    if not entry.exists():
        raise _not_installed("filesystem", entry)
    node = shutil.which("node")
    if node is None:
        raise ServerNotInstalledError("node is not on PATH: the filesystem server needs Node.js")
    roots = [str(p) for p in (root, *more_roots)]
    return ServerSpec(name="filesystem", command=[node, str(entry), *roots], cwd=root)


def init_git_repo(path: Path) -> Path:
    """Create a git repository at `path` with one commit (README.md) and return it."""
    path.mkdir(parents=True, exist_ok=True)
    git = ["git", "-C", str(path), "-c", "user.name=Ringfence Tests", "-c", "user.email=t@example"]
    subprocess.run([*git, "init", "--quiet", "--initial-branch=main"], check=True)
    (path / "README.md").write_text("test repository\n", encoding="utf-8")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "--quiet", "--no-gpg-sign", "-m", "initial"], check=True)
    return path


def _fixture(name: str, script: str, *args: str, env: dict[str, str] | None = None) -> ServerSpec:
    # The fixtures only need the `mcp` SDK, which the interpreter running the tests has.
    return ServerSpec(
        name=name, command=[sys.executable, str(FIXTURES / script), *args], env=env or {}
    )


def rugpull_server(state_file: Path, *, auto_flip: bool = False) -> ServerSpec:
    """fixtures/rugpull_server.py: `get_weather` as chosen by the variant written in state_file."""
    return _fixture(
        "rugpull",
        "rugpull_server.py",
        "--state",
        str(state_file),
        *(["--auto-flip"] if auto_flip else []),
    )


def poisoned_server() -> ServerSpec:
    """fixtures/poisoned_server.py: `add` with a poisoned description, `subtract` clean."""
    return _fixture("poisoned", "poisoned_server.py")


def misbehaving_server(*, paginate: bool = False) -> ServerSpec:
    """fixtures/misbehaving_server.py: crash, hang, slow_progress, big, echo (+ pages)."""
    return _fixture("misbehaving", "misbehaving_server.py", *(["--paginate"] if paginate else []))
