"""The rtpengine child process that ``CALLMASK_RTPENGINE=managed`` runs and supervises.

rtpengine runs in userspace only (``--table=-1``: no kernel module), in the foreground,
reading no configuration file (``--config-file=none``, so a host's
/etc/rtpengine/rtpengine.conf cannot change it), logging to stderr, which is read line by
line into ``log_path`` (if given) and the Python log. Its ng control socket always listens
on 127.0.0.1, whatever ``interface`` the media uses: the ng protocol has no authentication,
so it must never be reachable from outside. ``--delete-delay=0`` frees a call's ports as
soon as it is deleted, so the port range only needs to cover concurrent calls.

Readiness is an answered ng ``ping`` (the protocol's own health check), bounded by
``start_timeout_s``. Before spawning, the ng port is bound once without address reuse:
rtpengine sets ``SO_REUSEADDR`` on its ng socket, so a second rtpengine on a busy port
starts "successfully" and shares the port with the first, and a ping could be answered by
the wrong one.

``supervise()`` restarts a child that dies unexpectedly after a back-off of 0.5 s, 1 s,
2 s ... capped at 10 s; the back-off starts over once a child has run longer than the cap.
A child that is alive but does not answer pings is reported unhealthy, not killed: under
load a lost ping is more likely than a hung rtpengine, and killing it would drop every
call's media. The child runs in its own session so that Ctrl-C in a terminal reaches
callmask only, and callmask ends calls before it stops rtpengine.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from callmask.media.rtpengine import RtpengineClient, RtpengineError, RtpengineUnavailable

__all__ = ["ManagedRtpengine", "RtpengineStartError"]

logger = logging.getLogger(__name__)

NG_HOST = "127.0.0.1"
RESTART_BACKOFF_INITIAL_S = 0.5
RESTART_BACKOFF_CAP_S = 10.0
# How many of the child's last output lines an error message quotes.
_TAIL_LINES = 20

# rtpengine's stderr lines look like "[1700000000.123456] ERR: [core] ..."; map its syslog
# level to ours so a crash explanation is not hidden at DEBUG. NOTICE and below (one or
# two lines per call, e.g. "Creating new call") stay at DEBUG: at hundreds of calls per
# second they would drown callmask's own log.
_LEVELS = {
    "EMERG:": logging.CRITICAL,
    "ALERT:": logging.CRITICAL,
    "CRIT:": logging.CRITICAL,
    "ERR:": logging.ERROR,
    "WARNING:": logging.WARNING,
}


class RtpengineStartError(RtpengineUnavailable):
    """The managed rtpengine could not be started (binary, arguments, port, no ping)."""


class ManagedRtpengine:
    """One rtpengine child process: start, health, supervision with restarts, stop."""

    def __init__(
        self,
        *,
        binary: str = "rtpengine",
        interface: str = "127.0.0.1",
        ng_port: int,
        port_min: int,
        port_max: int,
        log_path: Path | None = None,
        pid_path: Path | None = None,
        log_level: int = 5,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 5.0,
        health_interval_s: float = 5.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        if not 1 <= ng_port <= 65535:
            raise ValueError(f"ng_port {ng_port} is not a UDP port")
        # rtpengine takes an even RTP port and the odd one above it for RTCP.
        if not 1 <= port_min < port_max <= 65535:
            raise ValueError(f"media port range {port_min}-{port_max} is not a usable range")
        if port_min <= ng_port <= port_max:
            raise ValueError(f"ng_port {ng_port} lies inside the media ports")
        self.binary = binary
        self.interface = interface
        self.ng_port = ng_port
        self.port_min = port_min
        self.port_max = port_max
        self.log_path = log_path
        # Where the child's pid is kept, so that after callmask itself was killed (and
        # its child, in a session of its own, lived on) the next start can end it.
        self.pid_path = pid_path
        self.log_level = log_level
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.health_interval_s = health_interval_s
        self.extra_args = tuple(extra_args)
        self.restarts = 0
        # Called when the child dies unexpectedly: its calls' media state died with it.
        self.on_exit: Callable[[], None] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._output_task: asyncio.Task[None] | None = None
        self._output_tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._log_file: BinaryIO | None = None
        self._healthy = False
        self._stopping = asyncio.Event()
        # Held while a child is being spawned, so stop() never misses a child that is
        # being created at the same moment.
        self._spawn_lock = asyncio.Lock()
        self._started_at = 0.0

    @property
    def address(self) -> tuple[str, int]:
        """The ng control address for ``RtpengineClient``."""
        return (NG_HOST, self.ng_port)

    @property
    def healthy(self) -> bool:
        """The child is running and answered its last ping."""
        process = self._process
        return self._healthy and process is not None and process.returncode is None

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def argv(self) -> list[str]:
        return [
            self.binary,
            "--config-file=none",
            "--foreground",
            "--log-stderr",
            f"--log-level={self.log_level}",
            "--table=-1",
            f"--interface={self.interface}",
            f"--listen-ng={NG_HOST}:{self.ng_port}",
            f"--port-min={self.port_min}",
            f"--port-max={self.port_max}",
            "--delete-delay=0",
            *self.extra_args,
        ]

    async def start(self) -> None:
        """Spawn rtpengine and return once it answers an ng ping.

        Raises ``RtpengineStartError`` quoting the child's last output lines when it
        cannot be spawned, exits, or does not answer within ``start_timeout_s``.
        """
        if self._process is not None and self._process.returncode is None:
            return
        self._stopping.clear()
        await self._spawn()

    async def stop(self) -> None:
        """SIGTERM the child, SIGKILL it after ``stop_timeout_s``; ends ``supervise()``."""
        self._stopping.set()
        async with self._spawn_lock:
            process = self._process
            if process is not None:
                await self._terminate(process)
                if self.pid_path is not None:
                    self.pid_path.unlink(missing_ok=True)
            self._healthy = False
            self._close_log()

    async def supervise(self) -> None:
        """Watch the child until ``stop()``: restart it whenever it dies, with back-off.

        Cancelling this task does not stop the child; ``stop()`` does.
        """
        if self._process is None:
            raise RuntimeError("ManagedRtpengine.start() must succeed before supervise()")
        loop = asyncio.get_running_loop()
        backoff_s = RESTART_BACKOFF_INITIAL_S
        async with RtpengineClient(self.address, timeout_s=1.0, retransmit_s=0.25) as client:
            while not self._stopping.is_set():
                process = self._process
                if process is None or not await self._watch(process, client):
                    return
                lived_s = loop.time() - self._started_at
                self._healthy = False
                if self.on_exit is not None:
                    self.on_exit()
                if lived_s > RESTART_BACKOFF_CAP_S:
                    backoff_s = RESTART_BACKOFF_INITIAL_S
                logger.warning(
                    "rtpengine (pid %d) exited with status %s after %.1f s; restarting in "
                    "%.1f s; its last output:\n%s",
                    process.pid,
                    process.returncode,
                    lived_s,
                    backoff_s,
                    self._tail_text(),
                )
                while True:
                    if await self._stopped_within(backoff_s):
                        return
                    backoff_s = min(backoff_s * 2, RESTART_BACKOFF_CAP_S)
                    try:
                        await self._spawn()
                    except RtpengineStartError as exc:
                        if self._stopping.is_set():
                            return
                        logger.error("rtpengine restart failed: %s", exc)
                        continue
                    self.restarts += 1
                    logger.warning(
                        "rtpengine restarted (pid %s, restart %d)", self.pid, self.restarts
                    )
                    break

    async def _watch(self, process: asyncio.subprocess.Process, client: RtpengineClient) -> bool:
        """Ping every ``health_interval_s`` until the child exits (True) or stop() (False)."""
        async with asyncio.TaskGroup() as waiters:
            exited = waiters.create_task(process.wait(), name="rtpengine exit")
            stopping = waiters.create_task(self._stopping.wait(), name="rtpengine stop")
            try:
                return await self._ping_until(process, client, exited, stopping)
            finally:
                exited.cancel()
                stopping.cancel()

    async def _ping_until(
        self,
        process: asyncio.subprocess.Process,
        client: RtpengineClient,
        exited: asyncio.Task[int],
        stopping: asyncio.Task[bool],
    ) -> bool:
        while True:
            await asyncio.wait(
                (exited, stopping),
                timeout=self.health_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if stopping.done():
                return False
            if exited.done():
                return True
            try:
                await client.ping()
            except RtpengineError as exc:
                if self._healthy:
                    logger.warning("rtpengine (pid %d) missed a health ping: %s", process.pid, exc)
                self._healthy = False
            else:
                if not self._healthy:
                    logger.info("rtpengine (pid %d) answers pings again", process.pid)
                self._healthy = True

    async def _stopped_within(self, delay_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay_s)
        return self._stopping.is_set()

    async def _spawn(self) -> None:
        async with self._spawn_lock:
            if self._stopping.is_set():
                raise RtpengineStartError("stop() was called")
            await self._end_leftover()
            self._check_ng_port_free()
            self._output_tail.clear()
            self._open_log()
            try:
                process = await asyncio.create_subprocess_exec(
                    *self.argv(),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise RtpengineStartError(f"cannot run {self.binary!r}: {exc}") from exc
            self._process = process
            if self.pid_path is not None:
                self.pid_path.write_text(f"{process.pid}\n")
            self._started_at = asyncio.get_running_loop().time()
            assert process.stdout is not None
            self._output_task = asyncio.create_task(self._read_output(process.stdout))
        try:
            await self._wait_ready(process)
        except BaseException:
            await self._terminate(process)
            raise
        self._healthy = True
        logger.info(
            "rtpengine started (pid %d), ng %s:%d, media %s ports %d-%d",
            process.pid,
            NG_HOST,
            self.ng_port,
            self.interface,
            self.port_min,
            self.port_max,
        )

    async def _wait_ready(self, process: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout_s
        async with RtpengineClient(self.address, timeout_s=0.25, retransmit_s=0.1) as client:
            while True:
                if process.returncode is not None:
                    await self._drain_output()
                    raise RtpengineStartError(
                        f"rtpengine exited with status {process.returncode} before answering "
                        f"a ping; its last output:\n{self._tail_text()}"
                    )
                if self._stopping.is_set():
                    raise RtpengineStartError("stop() was called during start")
                if loop.time() >= deadline:
                    raise RtpengineStartError(
                        f"rtpengine did not answer a ping on {NG_HOST}:{self.ng_port} within "
                        f"{self.start_timeout_s:g} s; its last output:\n{self._tail_text()}"
                    )
                try:
                    await client.ping()
                except RtpengineUnavailable:
                    continue
                except RtpengineError:
                    # Something answered, but not with pong: not our rtpengine.
                    raise
                return

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout_s)
            except TimeoutError:
                logger.warning(
                    "rtpengine (pid %d) ignored SIGTERM for %g s; killing it",
                    process.pid,
                    self.stop_timeout_s,
                )
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        await self._drain_output()

    async def _drain_output(self) -> None:
        """Wait (briefly) for the output reader to reach EOF after the child exited."""
        task = self._output_task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), 1.0)
        except TimeoutError:
            # A grandchild holding the pipe open must not block a stop.
            task.cancel()

    async def _read_output(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:
                # A line beyond the StreamReader limit: readline() dropped it; keep reading.
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            self._output_tail.append(line)
            if self._log_file is not None:
                self._log_file.write(raw if raw.endswith(b"\n") else raw + b"\n")
                self._log_file.flush()
            logger.log(_level_of(line), "rtpengine: %s", line)

    def _leftover_pid(self) -> int | None:
        """The pid in our pid file if it is still an rtpengine on our ng port (a pid can
        be reused by anything once its process is gone)."""
        if self.pid_path is None or not self.pid_path.exists():
            return None
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            cmdline = []
        ours = f"--listen-ng={NG_HOST}:{self.ng_port}".encode()
        if ours in cmdline and cmdline[0].endswith(b"rtpengine"):
            return pid
        self.pid_path.unlink(missing_ok=True)
        return None

    async def _end_leftover(self) -> None:
        """End the rtpengine a killed callmask left running on our ng port, if any: it
        holds the port, and the media state of calls that are gone anyway."""
        pid = self._leftover_pid()
        if pid is None:
            return
        logger.warning("ending rtpengine pid %d left over from a previous run", pid)
        for sig, wait_s in ((signal.SIGTERM, self.stop_timeout_s), (signal.SIGKILL, 1.0)):
            try:
                os.kill(pid, sig)
                for _ in range(max(1, int(wait_s / 0.05))):
                    await asyncio.sleep(0.05)
                    os.kill(pid, 0)  # raises once the process is gone
            except ProcessLookupError:
                break
        if self.pid_path is not None:
            self.pid_path.unlink(missing_ok=True)

    def _check_ng_port_free(self) -> None:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((NG_HOST, self.ng_port))
        except OSError as exc:
            hint = " (another rtpengine, maybe left over?)" if exc.errno == errno.EADDRINUSE else ""
            raise RtpengineStartError(
                f"ng port {NG_HOST}:{self.ng_port} is not free{hint}: {exc}"
            ) from exc
        finally:
            probe.close()

    def _open_log(self) -> None:
        if self.log_path is not None and self._log_file is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("ab")

    def _close_log(self) -> None:
        log_file, self._log_file = self._log_file, None
        if log_file is not None:
            log_file.close()

    def _tail_text(self) -> str:
        return "\n".join(self._output_tail) or "(no output)"


def _level_of(line: str) -> int:
    # Skip the "[timestamp] " prefix; the level word follows it.
    for word in line.split(maxsplit=2)[:2]:
        level = _LEVELS.get(word)
        if level is not None:
            return level
    return logging.DEBUG
