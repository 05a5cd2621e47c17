"""The ``callmask`` command as an operator uses it, run as a real subprocess with its
own data directory: schema, accounts, DIDs, errors, and the new user's first session
(``callmask run``, then the reference's curl examples with the printed key)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from callmask import cli
from tests.api.infobip import REFERENCE_ACTION
from tests.support.audio import AudioSamples
from tests.support.receiver import free_port

COMMAND_TIMEOUT_S = 60.0
STARTUP_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 10.0


def _callmask_binary() -> str:
    beside_python = Path(sys.executable).with_name("callmask")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("callmask")
    assert found, "the callmask console script is not installed (pip install -e .)"
    return found


@dataclass
class Operator:
    """An operator's shell: a working directory, a data directory, an environment."""

    home: Path
    env: dict[str, str]

    def run(
        self, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_callmask_binary(), *args],
            cwd=self.home,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )

    def ok(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        result = self.run(*args, extra_env=extra_env)
        assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
        return result.stdout

    def create_account(self, name: str = "demo") -> tuple[str, str]:
        out = self.ok("accounts", "create", name)
        account_id = re.search(r"account id:\s*(\S+)", out)
        api_key = re.search(r"api key:\s*(\S+)", out)
        assert account_id and api_key, out
        return account_id.group(1), api_key.group(1)

    def add_numbers(self, *numbers: str, account: str | None = None) -> dict[str, str]:
        """number (Infobip digits) -> numberKey, from the command's output."""
        args = ["numbers", "add", *numbers] + (["--account", account] if account else [])
        out = self.ok(*args)
        added = dict(
            (number, key) for key, number in re.findall(r"^([0-9A-F]{32})\s+(\d+)\s*$", out, re.M)
        )
        assert len(added) == len(numbers), out
        return added


class InProcessOperator(Operator):
    """The same commands run in this process through Click's test runner: each costs
    milliseconds instead of the ~0.5 s of a fresh interpreter importing the stack.
    Used for the error paths; the subprocess tests keep the console script honest."""

    def run(
        self, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = CliRunner().invoke(cli.app, list(args), env={**self.env, **(extra_env or {})})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            # A traceback the operator would have seen: fail with it.
            raise result.exception
        return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


@pytest.fixture(scope="session")
def audio(tmp_path_factory: pytest.TempPathFactory) -> AudioSamples:
    return AudioSamples(tmp_path_factory.mktemp("cli-audio"))


@pytest.fixture
def operator(tmp_path: Path) -> Operator:
    # Nothing of the caller's configuration leaks in: the test names every variable.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLMASK_")}
    env["CALLMASK_DATA_DIR"] = str(tmp_path / "var")
    home = tmp_path / "home"
    home.mkdir()
    return Operator(home=home, env=env)


@pytest.fixture
def in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> InProcessOperator:
    for name in [k for k in os.environ if k.startswith("CALLMASK_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(home)  # no .env of the repository is read
    return InProcessOperator(home=home, env={"CALLMASK_DATA_DIR": str(tmp_path / "var")})


@pytest.fixture
def migrated(in_process: InProcessOperator, sqlite_template: Path) -> InProcessOperator:
    """An operator whose store is already at head (a copy of the session's migrated
    SQLite file), for tests about the other commands."""
    data_dir = Path(in_process.env["CALLMASK_DATA_DIR"])
    data_dir.mkdir(parents=True)
    shutil.copy(sqlite_template, data_dir / "callmask.db")
    return in_process


def test_an_operator_sets_up_the_store_an_account_and_a_did(operator: Operator) -> None:
    out = operator.ok("db", "upgrade")
    assert "database at head" in out
    assert (Path(operator.env["CALLMASK_DATA_DIR"]) / "callmask.db").exists()

    account_id, api_key = operator.create_account("demo")
    assert re.fullmatch(r"[0-9a-f]{16}", account_id)
    assert len(api_key) >= 40

    number_key = operator.add_numbers("+41793026731", account=account_id)["41793026731"]
    listing = operator.ok("numbers", "list")
    assert re.search(rf"^{number_key}\s+41793026731\s+{account_id}$", listing, re.M), listing


def test_an_operator_lists_accounts_and_free_numbers(migrated: InProcessOperator) -> None:
    account_id, api_key = migrated.create_account("demo")
    accounts = migrated.ok("accounts", "list")
    assert f"{account_id}  demo" in accounts
    assert api_key not in accounts  # shown once, at creation
    spare_key = migrated.add_numbers("41793026732")["41793026732"]
    listing = migrated.ok("numbers", "list")
    assert re.search(rf"^{spare_key}\s+41793026732\s+\(available\)$", listing, re.M), listing


def test_an_operator_adds_national_numbers_in_the_configured_region(
    migrated: InProcessOperator,
) -> None:
    out = migrated.ok(
        "numbers", "add", "079 302 67 31", extra_env={"CALLMASK_DEFAULT_REGION": "ch"}
    )
    assert re.search(r"^[0-9A-F]{32}\s+41793026731$", out, re.M), out
    result = migrated.run("numbers", "add", "0793026732")
    assert result.returncode == 1
    assert "CALLMASK_DEFAULT_REGION" in result.stderr


def test_an_operator_mistake_exits_1_with_a_clear_error_and_adds_nothing(
    migrated: InProcessOperator, subtests: pytest.Subtests
) -> None:
    mistakes = [
        (["numbers", "add", "12345"], "not a valid phone number: '12345'"),
        (["numbers", "add", "+41793026731", "not-a-number"], "not a valid phone number"),
        (["numbers", "add", "+41793026731", "--account", "nobody"], "account nobody not found"),
        (["numbers", "add", "+41793026731", "41793026731"], "already in the inventory"),
    ]
    for args, error in mistakes:
        with subtests.test(msg=" ".join(args)):
            result = migrated.run(*args)
            assert result.returncode == 1, (result.stdout, result.stderr)
            assert result.stderr.startswith("error: "), result.stderr
            assert error in result.stderr
            assert "Traceback" not in result.stderr
            assert result.stdout == ""
    assert migrated.ok("numbers", "list") == ""


def test_a_command_on_a_store_that_was_never_set_up_says_what_to_do(
    in_process: InProcessOperator,
) -> None:
    result = in_process.run("accounts", "create", "demo")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: database: "), result.stderr
    assert "callmask db upgrade" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def node(operator: Operator, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``callmask run`` on free loopback ports, as the new user starts it."""
    api_port = free_port()
    env = {
        **operator.env,
        "CALLMASK_API_PORT": str(api_port),
        "CALLMASK_SIP_PORT": str(free_port()),
        "CALLMASK_RTPENGINE": "127.0.0.1:1",  # no media needed for the REST API
    }
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [_callmask_binary(), "run"], cwd=operator.home, env=env, stdout=log, stderr=log
    )
    base_url = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"callmask run exited with {process.returncode}:\n{_tail(tmp_path)}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"/healthz did not answer in {STARTUP_TIMEOUT_S} s:\n{_tail(tmp_path)}")
            time.sleep(0.1)
        yield process, base_url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        log.close()


def _tail(tmp_path: Path) -> str:
    return (tmp_path / "run.log").read_text(errors="replace")[-4000:]


@pytest.mark.interop  # the audio upload is a real MP3 from espeak-ng + lame
def test_a_new_user_runs_callmask_and_replays_the_reference_with_the_printed_key(
    operator: Operator,
    node: tuple[subprocess.Popen[bytes], str],
    tmp_path: Path,
    audio: AudioSamples,
) -> None:
    process, base_url = node
    # In a second terminal, while the node runs (same SQLite file).
    account_id, api_key = operator.create_account("demo")
    number_key = operator.add_numbers("+41793026731", account=account_id)["41793026731"]
    spare_key = operator.add_numbers("+41793026732")["41793026732"]

    # The reference's requests, as curl sends them: Basic auth, JSON in and out.
    token = base64.b64encode(f"{account_id}:{api_key}".encode()).decode()
    headers = {
        "Authorization": f"Basic {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as curl:
        reply = curl.post(f"/numbers/1/numbers/{number_key}/action", json=REFERENCE_ACTION)
        assert reply.status_code == 200, reply.text
        action = reply.json()
        assert {k: action[k] for k in REFERENCE_ACTION} == REFERENCE_ACTION

        reply = curl.get(f"/numbers/1/numbers/{number_key}/actions")
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"actions": [action]}

        reply = curl.delete(f"/numbers/1/numbers/{number_key}/actions/{action['actionKey']}")
        assert reply.status_code == 204
        assert reply.content == b""

        content = base64.b64encode(audio.speech_mp3()).decode()
        reply = curl.post("/numbers/1/files", json={"content": content})
        assert reply.status_code == 200, reply.text
        file_id = reply.json()["fileId"]
        stored = Path(operator.env["CALLMASK_DATA_DIR"]) / "files" / f"{file_id}.mp3"
        assert stored.read_bytes() == audio.speech_mp3()

        reply = curl.get("/numbers/1/numbers/available")
        assert [n["numberKey"] for n in reply.json()["numbers"]] == [spare_key]
        reply = curl.post("/numbers/1/numbers", json={"numberKey": spare_key})
        assert reply.status_code == 200, reply.text
        reply = curl.get("/numbers/1/numbers")
        assert reply.json()["numberCount"] == 2

        reply = curl.get("/numbers/1/numbers", headers={"Authorization": f"App {api_key}"})
        assert reply.status_code == 200
        reply = curl.get("/numbers/1/numbers", headers={"Authorization": "Basic d3Jvbmc6d3Jvbmc="})
        assert reply.status_code == 401

    # Ctrl-C: a clean exit, in time.
    process.send_signal(signal.SIGINT)
    try:
        assert process.wait(timeout=SHUTDOWN_TIMEOUT_S) == 0, _tail(tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"callmask run still running {SHUTDOWN_TIMEOUT_S} s after SIGINT")
    assert "Traceback" not in _tail(tmp_path)
