"""ManagedRtpengine with the real rtpengine binary: start, stop, failures to start, and
the supervisor bringing a killed rtpengine back."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import pytest

from callmask.media.rtpengine import RtpengineClient
from callmask.media.rtpengine_process import ManagedRtpengine, RtpengineStartError
from tests.media.conftest import RTPENGINE_BINARY, managed, started
from tests.support.sipp import free_udp_port


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists"; /proc tells whether it has exited.
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def wait_until(condition: object, *, timeout_s: float) -> bool:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return bool(condition())


@pytest.mark.interop
async def test_the_operator_starts_and_stops_the_managed_rtpengine(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "rtpengine.log"
    engine, _ = await started(log_path, log_level=6)
    try:
        pid = engine.pid
        assert pid is not None and alive(pid)
        assert engine.healthy
        assert engine.address[0] == "127.0.0.1"
        async with RtpengineClient(engine.address) as client:
            await client.ping()
        await engine.start()  # already running: nothing happens
        assert engine.pid == pid
    finally:
        await engine.stop()

    assert not alive(pid)
    assert not engine.healthy
    assert engine.pid is None
    await engine.stop()  # idempotent
    log = log_path.read_text()
    assert "Startup complete" in log
    assert "Received command 'ping'" in log
    # The ng port is free again for the next start.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind(engine.address)
    finally:
        probe.close()


async def test_a_missing_binary_is_a_clear_start_error(tmp_path: Path) -> None:
    engine = ManagedRtpengine(
        binary=str(tmp_path / "no-such-rtpengine"),
        ng_port=free_udp_port(),
        port_min=46000,
        port_max=46099,
    )
    with pytest.raises(RtpengineStartError, match="no-such-rtpengine"):
        await engine.start()
    assert not engine.healthy
    await engine.stop()


@pytest.mark.interop
async def test_rtpengine_refusing_its_arguments_is_reported_with_its_own_words() -> None:
    if RTPENGINE_BINARY is None:
        pytest.skip("rtpengine not installed")
    engine, _ = managed(None)
    engine.interface = "256.1.1.1"  # not an address: rtpengine exits at once
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    with pytest.raises(RtpengineStartError) as raised:
        await engine.start()
    assert loop.time() - started_at < 5.0
    message = str(raised.value)
    assert "exited with status" in message
    assert "Invalid interface specification" in message
    await engine.stop()


@pytest.mark.interop
async def test_an_ng_port_already_in_use_is_refused_before_spawning() -> None:
    if RTPENGINE_BINARY is None:
        pytest.skip("rtpengine not installed")
    engine, _ = managed(None)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(engine.address)
    try:
        with pytest.raises(RtpengineStartError, match="not free"):
            await engine.start()
        assert engine.pid is None
    finally:
        squatter.close()


async def test_an_rtpengine_that_never_answers_times_out_with_a_clear_error(
    tmp_path: Path,
) -> None:
    # A stand-in binary that runs but never listens: start() must give up in time.
    fake = tmp_path / "silent-rtpengine"
    fake.write_text("#!/bin/sh\necho 'pretending to start'\nexec sleep 30\n")
    fake.chmod(0o755)
    engine = ManagedRtpengine(
        binary=str(fake),
        ng_port=free_udp_port(),
        port_min=46000,
        port_max=46099,
        start_timeout_s=1.0,
    )
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    with pytest.raises(RtpengineStartError, match="did not answer a ping") as raised:
        await engine.start()
    assert 1.0 <= loop.time() - started_at < 4.0
    assert "pretending to start" in str(raised.value)
    assert engine.pid is None  # the silent child was terminated
    await engine.stop()


@pytest.mark.interop
async def test_a_killed_rtpengine_is_restarted_by_the_supervisor(tmp_path: Path) -> None:
    engine, _ = await started(tmp_path / "rtpengine.log", health_interval_s=0.2)
    supervisor = asyncio.create_task(engine.supervise())
    try:
        first_pid = engine.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)

        assert await wait_until(lambda: engine.restarts == 1, timeout_s=10.0)
        assert await wait_until(lambda: engine.healthy, timeout_s=5.0)
        second_pid = engine.pid
        assert second_pid is not None and second_pid != first_pid
        assert not alive(first_pid)
        async with RtpengineClient(engine.address) as client:
            await client.ping()
        assert not supervisor.done()

        # A second crash is survived too (back-off 1 s this time).
        os.kill(second_pid, signal.SIGKILL)
        assert await wait_until(lambda: engine.restarts == 2, timeout_s=10.0)
        assert await wait_until(lambda: engine.healthy, timeout_s=5.0)
    finally:
        await engine.stop()
        await asyncio.wait_for(supervisor, 5.0)

    third_pid_gone = engine.pid is None
    assert third_pid_gone
    assert supervisor.result() is None
    assert engine.restarts == 2


@pytest.mark.interop
async def test_stop_during_the_restart_back_off_ends_supervision_without_a_new_child(
    tmp_path: Path,
) -> None:
    engine, _ = await started(None)
    supervisor = asyncio.create_task(engine.supervise())
    first_pid = engine.pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    assert await wait_until(lambda: not engine.healthy, timeout_s=5.0)
    await engine.stop()  # within the 0.5 s back-off
    await asyncio.wait_for(supervisor, 5.0)
    assert engine.restarts == 0
    assert engine.pid is None
