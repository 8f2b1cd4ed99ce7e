"""The demo agent's tools: they really read, write, run, fetch, send and query — in a workspace."""

from __future__ import annotations

import http.server
import json
import shlex
import sqlite3
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

SALES = """region,product,amount
north,widgets,1200
north,gadgets,800
south,widgets,450
south,gizmos,1500
east,gadgets,975
west,widgets,2210
"""


def make_workspace(root: Path) -> None:
    """Input data, an empty reports folder and a small company database."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "reports").mkdir(exist_ok=True)
    (root / "data" / "q3_sales.csv").write_text(SALES)
    db = sqlite3.connect(root / "company.db")
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS sales (region TEXT, product TEXT, amount INTEGER);
        DELETE FROM sales;
        CREATE TABLE IF NOT EXISTS salaries (name TEXT, salary INTEGER);
        DELETE FROM salaries;
        INSERT INTO salaries VALUES ('alice', 120000), ('bob', 95000);
        """
    )
    rows = [line.split(",") for line in SALES.strip().splitlines()[1:]]
    db.executemany("INSERT INTO sales VALUES (?, ?, ?)", [(r, p, int(a)) for r, p, a in rows])
    db.commit()
    db.close()


class _Rates(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"EUR": 0.92, "GBP": 0.79}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


def start_rates_service() -> tuple[http.server.HTTPServer, str]:
    """A local HTTP service on 127.0.0.1 (an ephemeral port); returns it and its base URL."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Rates)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class Tools:
    """The tool implementations, rooted in one workspace folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read_file(self, path: str) -> str:
        return (self.root / path).read_text()

    def write_file(self, path: str, content: str) -> int:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.write_text(content)

    def run_shell(self, command: str) -> str:
        done = subprocess.run(  # noqa: PLW1510 - output is returned either way
            shlex.split(command), cwd=self.root, capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def fetch_url(self, url: str) -> str:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - policy-checked
            return str(response.read().decode())

    def send_email(self, to: str, subject: str, body: str) -> str:
        with (self.root / "outbox.jsonl").open("a") as fh:
            fh.write(json.dumps({"to": to, "subject": subject, "body": body}) + "\n")
        return f"queued for {to}"

    def query_db(self, sql: str) -> list[list[Any]]:
        db = sqlite3.connect(self.root / "company.db")
        try:
            return [list(row) for row in db.execute(sql).fetchall()]
        finally:
            db.close()
