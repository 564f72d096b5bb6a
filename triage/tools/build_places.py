"""Build the place list (``triage/resources/places.toml``) that reads a district from complaint text.

    python -m triage.tools.build_places --data ../shared/data

Many intake systems send no district. The router then reads it from the text (``เขตบางนา``,
``แขวงคลองตัน``, a well-known place); see ``triage.routing.Places``. This writes:

- ``[subdistricts]``: each Bangkok subdistrict (แขวง) of the tickets with the district (เขต) it
  belongs to, kept when at least 90% of its tickets (and 5 or more) agree;
- ``[places]``: well-known places that lie in one district, written by hand below (public knowledge;
  an operator adds more).

Re-running overwrites the file; only place names are written, never complaint text.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from triage.tools.build_directory import BANGKOK, _toml_value

# Well-known places inside one district (public knowledge). Names that span districts (roads such as
# ลาดพร้าว, รามคำแหง, สุขุมวิท) are left out: they would guess.
KNOWN_PLACES: dict[str, str] = {
    "สยามสแควร์": "ปทุมวัน", "สยามพารากอน": "ปทุมวัน", "มาบุญครอง": "ปทุมวัน", "สนามศุภชลาศัย": "ปทุมวัน",
    "จุฬาลงกรณ์มหาวิทยาลัย": "ปทุมวัน", "สวนลุมพินี": "ปทุมวัน", "ราชประสงค์": "ปทุมวัน", "ประตูน้ำ": "ราชเทวี",
    "อนุสาวรีย์ชัยสมรภูมิ": "ราชเทวี", "อนุสาวรีย์ชัย": "ราชเทวี", "สนามหลวง": "พระนคร", "ถนนข้าวสาร": "พระนคร",
    "ท่าช้าง": "พระนคร", "ปากคลองตลาด": "พระนคร", "เยาวราช": "สัมพันธวงศ์", "สำเพ็ง": "สัมพันธวงศ์",
    "หัวลำโพง": "ปทุมวัน", "สีลม": "บางรัก", "ทองหล่อ": "วัฒนา", "เอกมัย": "วัฒนา", "อโศก": "วัฒนา",
    "ตลาดนัดจตุจักร": "จตุจักร", "สวนจตุจักร": "จตุจักร", "หมอชิต": "จตุจักร", "สนามบินดอนเมือง": "ดอนเมือง",
    "สนามบินสุวรรณภูมิ": "ลาดกระบัง", "สวนหลวง ร.9": "ประเวศ", "ท่าพระจันทร์": "พระนคร", "วงเวียนใหญ่": "ธนบุรี",
    "ศิริราช": "บางกอกน้อย", "ท่าเตียน": "พระนคร", "ห้วยขวาง": "ห้วยขวาง", "เดอะมอลล์บางกะปิ": "บางกะปิ",
    "มีนบุรี": "มีนบุรี", "สวนรถไฟ": "จตุจักร", "บางซื่อ": "บางซื่อ", "คลองถม": "ป้อมปราบศัตรูพ่าย",
}


def build_places(tickets: pd.DataFrame, min_share: float = 0.9, min_count: int = 5) -> dict[str, dict[str, str]]:
    """``{"subdistricts": {แขวง: เขต}, "places": {...}}`` from tickets with district, subdistrict, province."""
    bkk = tickets[(tickets["province"] == BANGKOK) & tickets["district"].notna() & tickets["subdistrict"].notna()]
    subs: dict[str, str] = {}
    for sub, group in bkk.groupby(bkk["subdistrict"].astype(str).str.strip()):
        counts = group["district"].astype(str).value_counts()
        if sub and len(group) >= min_count and counts.iloc[0] / len(group) >= min_share:
            subs[sub] = str(counts.index[0])
    return {"subdistricts": dict(sorted(subs.items())), "places": dict(sorted(KNOWN_PLACES.items()))}


HEADER = """# Places that name a Bangkok district in complaint text, for intake systems that send no district.
# Built by `python -m triage.tools.build_places` (see that module's docstring), then edited by hand.
# [subdistricts]: แขวง -> เขต, read from the tickets; [places]: well-known places in one district."""


def to_toml(places: dict[str, dict[str, str]]) -> str:
    lines = [HEADER, ""]
    for table in ("subdistricts", "places"):
        lines += [f"[{table}]"] + [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in places[table].items()] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build the place list from the shared data.")
    ap.add_argument("--data", default="../shared/data", type=Path)
    ap.add_argument("--out", default=Path(__file__).resolve().parent.parent / "resources" / "places.toml", type=Path)
    a = ap.parse_args(argv)
    tickets = pd.concat([pd.read_parquet(p, columns=["district", "subdistrict", "province"])
                         for p in sorted((a.data / "traffy").glob("*.parquet"))])
    a.out.write_text(to_toml(build_places(tickets)), encoding="utf-8")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
