"""Shared pieces of the API tests: keys, settings for a tmp data dir, real complaint texts."""

from __future__ import annotations

from pathlib import Path

from triage.config import Settings

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


def settings_for(tmp: Path, models: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"data_dir": tmp, "models_dir": models, "api_keys": KEYS}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
