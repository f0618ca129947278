"""`mlflow models serve` of the champion, as a real process on localhost: scores and 400s over HTTP."""

from __future__ import annotations

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

import pytest
import torch

from pipeline.export.loader import load_student_artifact
from pipeline.registry.registry import serve_command
from tests.registry.conftest import Served, Students


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The served champion's base URL; the server (its own process group) is stopped afterwards."""
    port = _free_port()
    command, env = serve_command(served.settings, alias=served.config.champion_alias, port=port)
    log = (tmp_path_factory.mktemp("serve") / "server.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=1)
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"mlflow models serve exited with {process.returncode}; see {log.name}")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
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
