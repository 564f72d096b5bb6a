"""Shared pieces of the API tests: keys, settings for a tmp data dir, real complaint texts, a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from triage.config import Settings
from triage.testing import REPO, shared_data_dir

INTAKE, REVIEWER, ADMIN = "intake-key-0001", "reviewer-key-0002", "admin-key-0003"
KEYS = f"{INTAKE}:intake,{REVIEWER}:reviewer,{ADMIN}:admin"
H_INTAKE, H_REVIEWER, H_ADMIN = ({"X-API-Key": k} for k in (INTAKE, REVIEWER, ADMIN))

TEXTS = [
    "ไฟฟ้าดับทั้งซอย สายไฟช็อตมีประกายไฟ อันตรายมาก",
    "ถนนเป็นหลุมเป็นบ่อ รถจักรยานยนต์ล้มบ่อย",
    "ขยะไม่มีคนมาเก็บสามวันแล้ว ส่งกลิ่นเหม็น",
    "น้ำท่วมขังหน้าบ้านทุกครั้งที่ฝนตก ท่อระบายน้ำอุดตัน",
    "ทางเท้ามีผู้ค้าแผงลอยวางของกีดขวาง เดินไม่ได้",
    "เสียงดังจากร้านอาหารกลางคืนจนถึงตีสาม",
    "ไฟทางสาธารณะดับหลายต้น มืดมากตอนกลางคืน",
    "ต้นไม้ใหญ่กิ่งหักเกือบล้มทับสายไฟ",
]


def require_shared_data(part: str) -> Path:
    """``<shared data>/<part>``; skips the test when it is missing, or fails it when ``CI`` is set."""
    path = shared_data_dir() / part
    if not path.exists():
        message = f"shared data not found at {path} (set TRIAGE_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; with CI set a missing data folder fails the run", pytrace=False)
        pytest.skip(message)
    return path


def settings_for(tmp: Path, models: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"data_dir": tmp, "models_dir": models, "api_keys": KEYS}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A real ``serve.py`` on a free loopback port with a temp data dir, ready when constructed."""

    def __init__(self, data: Path, models: Path, workers: int | None = 1, **env_extra: str) -> None:
        """``workers=None``: no ``--workers`` option, so serve.py's default (one per core, at most 4)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TRIAGE_DATA_DIR": str(data), "TRIAGE_MODELS_DIR": str(models), "TRIAGE_API_KEYS": KEYS,
               "TRIAGE_LOG_LEVEL": "warning", **env_extra}
        self.log = (data.parent / f"server-{self.port}.log").open("w")
        env.pop("TRIAGE_WORKERS", None)
        given = ["--workers", str(workers)] if workers is not None else []
        self.proc = subprocess.Popen([sys.executable, str(REPO / "serve.py"), "--host", "127.0.0.1", "--port",
                                      str(self.port), *given], env=env, cwd=REPO, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve.py exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("serve.py did not become ready in 180 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
