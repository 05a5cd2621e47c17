"""``callmask run`` as an operator starts it: a real process with its own data
directory and managed rtpengine, one account with one DID whose masking action points
at the test's loopback receiver."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.receiver import Receiver
from tests.support.sipp import free_udp_port

DID = "41793026731"
CALLMASK = str(Path(sys.executable).with_name("callmask"))


def rtpengine_running(ng_port: int) -> bool:
    found = subprocess.run(
        ["pgrep", "-f", f"listen-ng=127.0.0.1:{ng_port}"], capture_output=True, check=False
    )
    return found.returncode == 0


@dataclass
class NodeProcess:
    home: Path
    receiver: Receiver
    api_port: int = field(default_factory=free_udp_port)
    sip_port: int = field(default_factory=free_udp_port)
    trunk_port: int = field(default_factory=free_udp_port)
    ng_port: int = field(default_factory=free_udp_port)
    process: asyncio.subprocess.Process | None = None
    runs: int = 0

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLMASK_")}
        return env | {
            "CALLMASK_DATA_DIR": str(self.home / "var"),
            "CALLMASK_API_PORT": str(self.api_port),
            "CALLMASK_SIP_PORT": str(self.sip_port),
            "CALLMASK_TRUNK_URI": f"sip:127.0.0.1:{self.trunk_port}",
            "CALLMASK_RTPENGINE_NG_PORT": str(self.ng_port),
            "CALLMASK_RTPENGINE_PORT_MIN": "29100",
            "CALLMASK_RTPENGINE_PORT_MAX": "29199",
            "CALLMASK_WEBHOOK_ALLOW_PRIVATE": "true",
        }

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [CALLMASK, *args], env=self.env, capture_output=True, text=True, timeout=60, check=True
        )
        return done.stdout

    def query(self, sql: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.home / "var" / "callmask.db") as db:
            return db.execute(sql).fetchall()

    async def set_up(self) -> None:
        """Schema, an account, its DID, then the first start and its masking action."""
        self.cli("db", "upgrade")
        words = self.cli("accounts", "create", "demo").split()
        account_id, api_key = words[2], words[5]
        number_key = self.cli("numbers", "add", "+" + DID, "--account", account_id).split()[0]
        await self.start()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.api_port}") as api:
            reply = await api.post(
                f"/numbers/1/numbers/{number_key}/actions",
                headers={"Authorization": f"App {api_key}"},
                json={
                    "type": "VOICE_NUMBER_MASKING",
                    "callbackUrl": self.receiver.url("/callback"),
                    "statusUrl": self.receiver.url("/status"),
                },
            )
            assert reply.status_code == 200, reply.text

    async def start(self) -> None:
        self.runs += 1
        log = (self.home / f"run{self.runs}.log").open("wb")
        self.process = await asyncio.create_subprocess_exec(
            CALLMASK, "run", env=self.env, stdout=log, stderr=log
        )
        log.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.api_port}") as api:
            for _ in range(300):
                if self.process.returncode is not None:
                    raise AssertionError(f"callmask run exited:\n{self.log_tail()}")
                try:
                    if (await api.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"callmask run did not answer /healthz:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return (self.home / f"run{self.runs}.log").read_text(errors="replace")[-4000:]

    async def kill(self) -> None:
        """SIGKILL, as a crash would: no BYE, no CDR, and its rtpengine lives on."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> None:
        """End the test's node whatever state it is in, leaving no process behind."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=20)
            except TimeoutError:
                await self.kill()
        # After a kill() the managed rtpengine was orphaned: end it too.
        pkill = await asyncio.create_subprocess_exec(
            "pkill", "-f", f"listen-ng=127.0.0.1:{self.ng_port}"
        )
        await pkill.wait()
