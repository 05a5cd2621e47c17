"""The cluster as an operator runs it, for the cluster test and bench/cluster.py:
Kamailio started from the shipped deploy/kamailio/kamailio.cfg, and callmask nodes as
``callmask run`` processes, each on its own loopback address (127.0.0.2, 127.0.0.3...)
with its own API port, managed rtpengine and media port range, all on one PostgreSQL.

Every wait is bounded; every process started here is stopped here, by its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.sipp import free_udp_port

ROOT = Path(__file__).resolve().parents[2]
KAMAILIO_CFG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
CALLMASK = str(Path(sys.executable).with_name("callmask"))
ADMIN_KEY = "cluster-operator-key"


def kamailio_missing() -> str | None:
    """Why the cluster cannot run here, or None."""
    for binary in ("kamailio", "kamcmd", "sipp", "rtpengine"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed (scripts/install-system.sh installs it)"
    return None


def _terminate_pid(pid: int, timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, one process this rig started (by its pid)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(int(timeout_s / 0.05)):
            if _is_zombie_or_gone(pid):
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state == "Z"


@dataclass
class Kamailio:
    """Kamailio from the shipped configuration, on 127.0.0.1, dispatching to ``nodes``
    ((address, SIP port) each) and relaying the nodes' outbound legs to the trunk."""

    workdir: Path
    nodes: list[tuple[str, int]]
    trunk_port: int
    port: int = field(default_factory=free_udp_port)
    ping_interval_s: int = 1
    fr_timer_ms: int = 1000
    fr_inv_timer_ms: int = 10_000
    children: int = 2
    # Shared memory in MB (-m): Debian's unit gives 64 (SHM_MEMORY); transactions live in
    # it, so a high call rate needs more.
    shm_mb: int = 64
    process: asyncio.subprocess.Process | None = None

    @property
    def control(self) -> Path:
        return self.workdir / "kamailio_ctl"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    def argv(self) -> list[str]:
        dispatcher_list = self.workdir / "dispatcher.list"
        dispatcher_list.write_text(
            "".join(
                f"1 sip:{host}:{port} 0 0 duid=node-{n}\n"
                for n, (host, port) in enumerate(self.nodes, 1)
            )
        )
        defines = {
            "LISTEN": f"udp:127.0.0.1:{self.port}",
            "TRUNK_HOST": '"127.0.0.1"',
            "TRUNK_PORT": f'"{self.trunk_port}"',
            "DISPATCHER_LIST": f'"{dispatcher_list}"',
            "CTL_SOCKET": f'"unix:{self.control}"',
            "PING_INTERVAL": str(self.ping_interval_s),
            "FR_TIMER_MS": str(self.fr_timer_ms),
            "FR_INV_TIMER_MS": str(self.fr_inv_timer_ms),
            "CHILDREN": str(self.children),
        }
        argv = ["kamailio", "-DD", "-E", "-f", str(KAMAILIO_CFG)]
        for name, value in defines.items():
            argv += ["-A", f"{name}={value}"]
        # Runtime files in the work directory, not /run/kamailio; private memory as Debian's unit.
        argv += ["-Y", str(self.workdir), "-P", str(self.workdir / "kamailio.pid")]
        return [*argv, "-m", str(self.shm_mb), "-M", "8"]

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv(), stdout=log, stderr=log, start_new_session=True
            )
        # Up when it answers an OPTIONS to itself (bounded).
        for _ in range(100):
            if self.process.returncode is not None:
                raise AssertionError(f"kamailio exited:\n{self.log_tail()}")
            if await asyncio.to_thread(self._answers_options):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"kamailio did not answer OPTIONS:\n{self.log_tail()}")

    def _answers_options(self) -> bool:
        branch = "z9hG4bK" + uuid.uuid4().hex
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            probe.settimeout(0.2)
            request = (
                f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
                f"To: <sip:127.0.0.1:{self.port}>\r\n"
                f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            probe.sendto(request.encode(), ("127.0.0.1", self.port))
            try:
                reply = probe.recv(4096)
            except TimeoutError:
                return False
        return reply.startswith(b"SIP/2.0 200")

    async def node_states(self) -> dict[str, str]:
        """Each node's dispatcher flags by SIP URI: ``AP`` up, ``IP`` down (probing)."""
        done = await asyncio.create_subprocess_exec(
            "kamcmd", "-s", f"unix:{self.control}", "dispatcher.list",
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(done.communicate(), timeout=5)
        text = output.decode(errors="replace")
        return dict(re.findall(r"URI: (\S+)\s+FLAGS: (\S+)", text))

    async def wait_for_states(self, wanted: dict[str, str], timeout_s: float = 15) -> None:
        states: dict[str, str] = {}
        for _ in range(int(timeout_s / 0.2)):
            states = await self.node_states()
            if all(states.get(uri) == flags for uri, flags in wanted.items()):
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"dispatcher states {states}, wanted {wanted}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()


@dataclass
class Node:
    """One ``callmask run`` of the cluster."""

    node_id: str
    home: Path
    database_url: str
    sip_host: str
    trunk_uri: str
    media_ports: tuple[int, int]
    log_level: str = "INFO"
    api_port: int = field(default_factory=free_udp_port)
    sip_port: int = field(default_factory=free_udp_port)
    ng_port: int = field(default_factory=free_udp_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def sip_uri(self) -> str:
        return f"sip:{self.sip_host}:{self.sip_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def log_path(self) -> Path:
        return self.home / "callmask.log"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLMASK_")}
        return env | {
            "CALLMASK_NODE_ID": self.node_id,
            # Distinct per node, as README's "Running several nodes" asks: its own
            # loopback address's last byte.
            "CALLMASK_NODE_INDEX": str(int(self.sip_host.rsplit(".", 1)[1]) % 16),
            "CALLMASK_DATA_DIR": str(self.home / "var"),
            "CALLMASK_DATABASE_URL": self.database_url,
            "CALLMASK_API_HOST": "127.0.0.1",
            "CALLMASK_API_PORT": str(self.api_port),
            "CALLMASK_SIP_HOST": self.sip_host,
            "CALLMASK_SIP_PORT": str(self.sip_port),
            "CALLMASK_TRUNK_URI": self.trunk_uri,
            # Kamailio (and the trunk behind it) on 127.0.0.1 is the only peer.
            "CALLMASK_TRUNK_ALLOW": "127.0.0.1/32",
            "CALLMASK_RTPENGINE": "managed",
            "CALLMASK_RTPENGINE_NG_PORT": str(self.ng_port),
            "CALLMASK_RTPENGINE_PORT_MIN": str(self.media_ports[0]),
            "CALLMASK_RTPENGINE_PORT_MAX": str(self.media_ports[1]),
            "CALLMASK_WEBHOOK_ALLOW_PRIVATE": "true",
            "CALLMASK_ADMIN_KEY": ADMIN_KEY,
            "CALLMASK_LOG_LEVEL": self.log_level,
        }

    async def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                CALLMASK, "run", env=self.env, stdout=log, stderr=log
            )
        async with httpx.AsyncClient(base_url=self.api_url) as api:
            for _ in range(300):
                if self.process.returncode is not None:
                    raise AssertionError(f"{self.node_id} exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await api.get("/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.node_id} did not answer /healthz:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    async def kill(self) -> None:
        """SIGKILL, as a crash would: no BYE, no CDR; its rtpengine lives on."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> None:
        """End the node whatever state it is in, and the rtpengine a kill left behind."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=20)
            except TimeoutError:
                await self.kill()
        await asyncio.to_thread(self._end_orphaned_rtpengine)

    def _end_orphaned_rtpengine(self) -> None:
        pid_file = self.home / "var" / "rtpengine.pid"
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"rtpengine" in cmdline and f":{self.ng_port}".encode() in cmdline:
                _terminate_pid(pid)
