"""Settings of a callmask node, read from ``CALLMASK_*`` environment variables.

The table of variables and defaults is the one in DESIGN.md ("Configuration"); a
``.env`` file in the working directory is read too, so an operator can keep them in
one place. Everything that depends on another setting (the SQLite URL under the data
directory, the files directory) is derived here, once, so no module guesses a path.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

NODE_SLOTS = 16


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLMASK_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = None

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=1, le=65535)

    sip_host: str = "127.0.0.1"
    sip_port: int = Field(default=5060, ge=1, le=65535)
    trunk_uri: str = "sip:127.0.0.1:5080"
    # Digest credentials, when the trunk challenges outbound INVITEs (401/407).
    trunk_username: str | None = None
    trunk_password: str | None = None
    trunk_allow: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode] = Field(
        default_factory=lambda: [ipaddress.ip_network("127.0.0.0/8")]
    )

    rtpengine: str = "managed"
    # The managed rtpengine's control and media ports stay clear of Debian's packaged
    # rtpengine service (ng 2223, media 30000-40000), which may run on the same host.
    # A call takes four media ports (RTP and RTCP on each side): 10,000 ports carry
    # 2,500 calls at once.
    rtpengine_ng_port: int = Field(default=19222, ge=1024, le=65535)
    rtpengine_port_min: int = Field(default=20000, ge=1024, le=65535)
    rtpengine_port_max: int = Field(default=29999, ge=1024, le=65535)
    # Where the node takes rtpengine's DTMF reports (digits callers press as RFC 4733
    # events). The managed rtpengine is told a free loopback port of its own; an
    # external one needs --dtmf-log-dest set to this host:port.
    dtmf_listen: str | None = None
    # Where rtpengine writes a recorded call's pcap (its --recording-dir, with
    # --recording-method=pcap), read by this node once the call ends. The managed
    # rtpengine is given it; an external one must write to this same directory.
    # Default: <data_dir>/recordings/spool.
    recording_spool: Path | None = None
    # The address customers reach this node's API at, for the links callmask hands out
    # (a recording's recording_url). Default: http://<api_host>:<api_port>.
    public_url: str | None = None

    default_region: str | None = None
    callback_timeout: float = Field(default=5.0, gt=0, le=60)
    ring_timeout: float = Field(default=60.0, gt=0, le=600)
    webhook_allow_private: bool = False
    # Off only for tests that drive DeliveryWorker themselves.
    webhook_worker: bool = True
    admin_key: str | None = None
    log_level: str = "INFO"
    # Names this node's calls in the store, so a restarted node closes only the calls it
    # left open itself. Several nodes sharing one PostgreSQL need distinct ids.
    node_id: str | None = None
    # Call ids (Tata's "seconds.microseconds" shape) are minted in this node's own
    # slot of every 16 microseconds, so nodes sharing a store never mint the same id.
    # Distinct per node, 0 to 15.
    node_index: int = Field(default=0, ge=0, le=NODE_SLOTS - 1)

    # Uploads: the Infobip document caps audio files at 4 MB. The request body cap
    # leaves room for base64 (4/3) and the JSON around it.
    max_audio_bytes: int = 4 * 1024 * 1024
    max_request_bytes: int = 6 * 1024 * 1024
    audio_fetch_timeout: float = 10.0

    @field_validator("trunk_allow", mode="before")
    @classmethod
    def _split_cidrs(cls, value: object) -> object:
        # Environment values come as "127.0.0.0/8,10.1.2.0/24"; lists pass through.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("default_region")
    @classmethod
    def _upper_region(cls, value: str | None) -> str | None:
        return value.upper() if value else None

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'callmask.db'}"

    @property
    def effective_node_id(self) -> str:
        return self.node_id or f"{socket.gethostname()}:{self.sip_port}"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def recordings_dir(self) -> Path:
        """Finished recordings, one directory per account."""
        return self.data_dir / "recordings"

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def effective_recording_spool(self) -> Path:
        return self.recording_spool or self.recordings_dir / "spool"
