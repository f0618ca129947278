"""`recdistill registry serve` of the champion, as a real process on localhost: scores, 400s, limits, SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.export.loader import load_student_artifact
from pipeline.registry.registry import serve_command
from tests.network import LOOPBACK, listening_addresses
from tests.registry.conftest import Served, Students


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(served: Served, log_path) -> tuple[subprocess.Popen, str]:
    """`registry serve` of the champion on a free port, once it answers /ping."""
    port = _free_port()
    command, env = serve_command(served.settings, alias=served.config.champion_alias, port=port)
    log = log_path.open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            urllib.request.urlopen(f"{url}/ping", timeout=1)
            return process, url
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"registry serve exited with {process.returncode}: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def server(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The served champion's base URL; the server (its own process group) is stopped afterwards."""
    process, url = _start(served, tmp_path_factory.mktemp("serve") / "server.log")
    try:
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _post(url: str, body: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/invocations", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_served_champion_scores_a_request_like_the_artifact(server: str, students: Students) -> None:
    user, candidates, _ = students.requests[0]
    status, body = _post(server, {"dataframe_records": [students.contract.to_row(user, candidates)]})
    assert status == 200
    scores = torch.tensor(body["predictions"][0]["scores"], dtype=torch.float32)
    assert torch.equal(scores, load_student_artifact(students.good).score(user, candidates))


@pytest.mark.parametrize(("change", "message"), [
    ({"user_id": "abc"}, "request 0: user field 'user_id' holds 'abc' (str); expected a single integer"),
    ({"item_category": [3, 4]}, "input 'item_category' has shape (2,), axis 0 is 2 but B = 8"),
    ({"item_id": [], "item_category": [], "dense_item": []}, "candidate field 'item_id' is empty"),
    ({"item_id": None}, "candidate field 'item_id' is missing"),
])
def test_served_champion_rejects_a_malformed_request_with_400(server: str, students: Students,
                                                              change: dict, message: str) -> None:
    user, candidates, _ = students.requests[0]
    status, body = _post(server, {"dataframe_records": [{**students.contract.to_row(user, candidates), **change}]})
    assert status == 400
    assert body["error_code"] == "INVALID_PARAMETER_VALUE" and message in body["message"]


def test_served_champion_names_a_missing_column(server: str, students: Students) -> None:
    user, candidates, _ = students.requests[0]
    row = students.contract.to_row(user, candidates)
    del row["item_id"]
    status, body = _post(server, {"dataframe_records": [row]})
    assert status == 400 and "missing inputs ['item_id']" in body["message"]


def test_served_champion_refuses_deep_huge_unknown_and_out_of_range_requests(server: str, students: Students) -> None:
    """Finding 8: no 500 from nesting, no echo of a huge body, no silently dropped field, no None for 2**70."""
    user, candidates, _ = students.requests[0]
    row = students.contract.to_row(user, candidates)
    status, body = _post(server, b"[" * 100_000 + b"]" * 100_000)
    assert (status, body["message"]) == (400, "request body nests deeper than 16 levels")
    # 20 MB announced: refused from the headers, before a byte of it is read or echoed.
    connection = http.client.HTTPConnection(server.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", "/invocations")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(20 * 1024 * 1024))
    connection.endheaders(b"not json " * 100)
    response = connection.getresponse()
    assert response.status == 413 and len(response.read()) < 200
    connection.close()
    status, body = _post(server, b"not json " * 100)
    assert status == 400 and body["message"].startswith("request body is not JSON") and len(body["message"]) < 100
    status, body = _post(server, {"dataframe_records": [{**row, "coupon": 1}]})
    assert status == 400 and "unknown fields ['coupon']" in body["message"]
    status, body = _post(server, {"dataframe_records": [{**row, "user_id": 2**70}]})
    assert status == 400 and "outside the 64-bit integer range" in body["message"], body


def test_sigterm_stops_registry_serve_with_nothing_left_running(served: Served, tmp_path) -> None:
    """Finding 8: SIGTERM (or SIGINT) to `registry serve` frees its port and leaves no process behind."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        process, url = _start(served, tmp_path / f"serve-{signum}.log")
        assert listening_addresses([process.pid]) <= LOOPBACK  # finding 6: serving binds loopback by default
        family = [process.pid, *(child.pid for child in psutil.Process(process.pid).children(recursive=True))]
        process.send_signal(signum)
        assert process.wait(timeout=60) in (0, -signum, 128 + signum)  # uvicorn shuts down, then re-raises
        assert not [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/ping", timeout=2)


def test_a_bad_port_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["registry", "serve", "--port", "70000"])
    assert result.exit_code == 2 and "Input should be less than or equal to 65535" in result.output
