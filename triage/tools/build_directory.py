"""Build the agency directory (``triage/resources/agencies.toml``) from the shared data.

    python -m triage.tools.build_directory --data ../shared/data --out triage/resources/agencies.toml

How the directory is built, so that an operator can check and redo it:

1. Every agency name that appears in ``routing/traffy-forwards.csv`` (forwarded_from and
   forwarded_to) and in the ``X ส่งต่อไปยัง Y`` records of the tickets' ``note`` column is kept
   with its official spelling; its kind comes from the name (``KIND_PATTERNS``: ``สน.`` is a police
   station, ``การไฟฟ้านครหลวง`` the electricity authority, ...).
2. Bangkok's 50 districts are the districts of tickets whose province is กรุงเทพมหานคร; each gets
   its district office ``สำนักงานเขต<district>`` (the data writes it ``เขต<district>``, kept as alias).
3. Which police station and which MEA branch serves a district is read from the forwards: a
   ticket in district D forwarded to station S counts one vote for (D, S); the station with most
   votes is D's primary (ties: the one named after the district, then the first seen), the
   others serve D too (``also``). Districts the forwards say nothing about are filled from
   ``KNOWN_PRIMARY`` (public knowledge, listed in ``from_knowledge``: check these first).
4. Outside Bangkok a complaint goes to the province's Damrongdhamma Centre; the districts (อำเภอ)
   each centre covers are the (district, province) pairs seen in the tickets.

The output is a data file that an operator then edits by hand; re-running this overwrites it.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

BANGKOK = "กรุงเทพมหานคร"
BMA = "กรุงเทพมหานคร"
POLICE_HQ = "สำนักงานตำรวจแห่งชาติ (Royal Thai Police)"
METRO_POLICE = "กองบัญชาการตำรวจนครบาล (บช.น.)"
MEA_HQ = "การไฟฟ้านครหลวง MEA"
BKK_CENTRE = "ศูนย์ดำรงธรรมกรุงเทพมหานคร"
NATIONAL_CENTRE = "ศูนย์ดำรงธรรมกระทรวงมหาดไทย (ส่วนกลาง)"  # the service's escalation_agency

# (regex on the name, kind, parent). First match wins; "other" collects the rest.
KIND_PATTERNS: list[tuple[str, str, str | None]] = [
    (r"^(ฝ่าย\S+ )?เขต\S+$", "district_office", None),  # parent set below (the district office)
    (r"^สำนักงานเขต", "district_office", BMA),
    (r"^สำนักงานตำรวจแห่งชาติ", "police", None),
    (r"^กองบัญชาการตำรวจนครบาล", "police", POLICE_HQ),
    (r"^(สน\.|กองบังคับการตำรวจ)", "police", METRO_POLICE),
    (r"^การไฟฟ้านครหลวง MEA$", "electricity", None),
    (r"^การไฟฟ้านครหลวง", "electricity", MEA_HQ),
    (r"^สำนักการจราจรและขนส่ง", "bma_traffic", BMA),
    (r"สจส\.|สขส\.", "bma_traffic", "สำนักการจราจรและขนส่ง กรุงเทพมหานคร (สจส.)"),
    (r"^สำนักการโยธา", "bma_public_works", BMA),
    (r"สำนักการโยธา|สกบ\.สนย\.", "bma_public_works", "สำนักการโยธา กทม."),
    (r"^สำนักสิ่งแวดล้อม", "environment", BMA),
    (r"สำนักสิ่งแวดล้อม", "environment", "สำนักสิ่งแวดล้อม กทม."),
    (r"^กรมควบคุมมลพิษ", "environment", None),
    (r"^สำนักการระบายน้ำ", "bma_drainage", BMA),
    (r"สำนักการระบายน้ำ", "bma_drainage", "สำนักการระบายน้ำ กทม."),
    (r"^กองสัตวแพทย์", "bma_health", "สำนักอนามัย กทม."),
    (r"^สำนักอนามัย", "bma_health", BMA),
    (r"^สำนักพัฒนาสังคม", "social", BMA),
    (r"^กระทรวงพัฒนาสังคม", "social", None),
    (r"^แขวงทางหลวง", "highways", "กรมทางหลวง"),
    (r"^กรมทางหลวงชนบท", "rural_roads", None),
    (r"^กรมทางหลวง$", "highways", None),
    (r"กสทช|โทรคมนาคมแห่งชาติ|^NT|^กรุงเทพธนาคม", "telecom", None),
    (r"^การรถไฟแห่งประเทศไทย", "railway", None),
    (r"รฟม\.", "mass_transit", None),
    (r"ขสมก\.", "bus", None),
    (r"^กรมการขนส่งทางบก", "land_transport", None),
    (r"^การทางพิเศษ", "expressway", None),
    (r"การทางพิเศษ", "expressway", "การทางพิเศษแห่งประเทศไทย"),
    (r"^การประปานครหลวง", "water_supply", None),
    (r"^(กรมเจ้าท่า|การท่าเรือ)", "marine", None),
    (r"^กรมชลประทาน", "irrigation", None),
    (r"ประปา", "water_supply", "การประปานครหลวง กปน. (Metropolitan Waterworks Authority - MWA)"),
    (r"^ศูนย์ดำรงธรรม", "damrongdhamma", None),
]

# Agencies the routing table needs even where the forwards never name them.
EXTRA_AGENCIES: dict[str, dict[str, Any]] = {
    BMA: {"kind": "bma"},
    POLICE_HQ: {"kind": "police"},
    METRO_POLICE: {"kind": "police", "parent": POLICE_HQ},
    MEA_HQ: {"kind": "electricity"},
    "การไฟฟ้านครหลวง เขตสามเสน": {"kind": "electricity", "parent": MEA_HQ},
    "การไฟฟ้านครหลวง เขตลาดกระบัง": {"kind": "electricity", "parent": MEA_HQ},
    "สำนักการจราจรและขนส่ง กรุงเทพมหานคร (สจส.)": {"kind": "bma_traffic", "parent": BMA},
    "สำนักการโยธา กทม.": {"kind": "bma_public_works", "parent": BMA},
    "สำนักสิ่งแวดล้อม กทม.": {"kind": "environment", "parent": BMA},
    "สำนักการระบายน้ำ กทม.": {"kind": "bma_drainage", "parent": BMA},
    "สำนักอนามัย กทม.": {"kind": "bma_health", "parent": BMA},
    "กองสัตวแพทย์ สำนักอนามัย กทม.": {"kind": "bma_health", "parent": "สำนักอนามัย กทม."},
    "สำนักพัฒนาสังคม กทม.": {"kind": "social", "parent": BMA},
    "สำนักเทศกิจ กทม.": {"kind": "bma_city_law", "parent": BMA},
    "สำนักป้องกันและบรรเทาสาธารณภัย กทม.": {"kind": "bma_disaster", "parent": BMA},
    "กรมทางหลวง": {"kind": "highways"},
    "กรมทางหลวงชนบท กระทรวงคมนาคม": {"kind": "rural_roads"},
    "สำนักงานคณะกรรมการกิจการกระจายเสียง กิจการโทรทัศน์และกิจการโทรคมนาคมแห่งชาติ (กสทช.)": {"kind": "telecom"},
    "การรถไฟแห่งประเทศไทย": {"kind": "railway"},
    "การรถไฟฟ้าขนส่งมวลชนแห่งประเทศไทย (รฟม.)": {"kind": "mass_transit"},
    "องค์การขนส่งมวลชนกรุงเทพ (ขสมก.)": {"kind": "bus"},
    "กรมการขนส่งทางบก": {"kind": "land_transport"},
    "การทางพิเศษแห่งประเทศไทย": {"kind": "expressway"},
    "การประปานครหลวง กปน. (Metropolitan Waterworks Authority - MWA)": {"kind": "water_supply"},
    "กรมเจ้าท่า (Marine Department)": {"kind": "marine"},
    "กรมควบคุมมลพิษ": {"kind": "environment"},
    NATIONAL_CENTRE: {"kind": "damrongdhamma"},
    BKK_CENTRE: {"kind": "damrongdhamma", "parent": NATIONAL_CENTRE},
}

# Public knowledge for districts the forwards say nothing about (police station, MEA branch).
KNOWN_PRIMARY: dict[str, dict[str, str]] = {
    "police": {
        "คันนายาว": "สน.คันนายาว", "ดอนเมือง": "สน.ดอนเมือง", "ตลิ่งชัน": "สน.ตลิ่งชัน",
        "ทวีวัฒนา": "สน.ทวีวัฒนา", "บางซื่อ": "สน.บางซื่อ", "บางบอน": "สน.บางบอน",
        "สวนหลวง": "สน.คลองตัน", "หนองจอก": "สน.หนองจอก", "พระโขนง": "สน.พระโขนง",
        "บางกอกใหญ่": "สน.บางกอกใหญ่",
    },
    "electricity": {
        "บางกะปิ": "การไฟฟ้านครหลวง เขตบางกะปิ", "ห้วยขวาง": "การไฟฟ้านครหลวง เขตบางกะปิ",
        "วังทองหลาง": "การไฟฟ้านครหลวง เขตบางกะปิ", "บึงกุ่ม": "การไฟฟ้านครหลวง เขตนวลจันทร์",
        "สะพานสูง": "การไฟฟ้านครหลวง เขตมีนบุรี", "คลองสามวา": "การไฟฟ้านครหลวง เขตมีนบุรี",
        "ลาดกระบัง": "การไฟฟ้านครหลวง เขตลาดกระบัง", "ประเวศ": "การไฟฟ้านครหลวง เขตบางนา",
        "จอมทอง": "การไฟฟ้านครหลวง เขตราษฎร์บูรณะ", "ภาษีเจริญ": "การไฟฟ้านครหลวง เขตบางขุนเทียน",
        "บางบอน": "การไฟฟ้านครหลวง เขตบางขุนเทียน", "หนองแขม": "การไฟฟ้านครหลวง เขตบางขุนเทียน",
        "บางพลัด": "การไฟฟ้านครหลวง เขตธนบุรี", "คลองสาน": "การไฟฟ้านครหลวง เขตวัดเลียบ",
        "พระนคร": "การไฟฟ้านครหลวง เขตวัดเลียบ", "ป้อมปราบศัตรูพ่าย": "การไฟฟ้านครหลวง เขตวัดเลียบ",
        "สัมพันธวงศ์": "การไฟฟ้านครหลวง เขตวัดเลียบ", "บางรัก": "การไฟฟ้านครหลวง เขตวัดเลียบ",
        "สาทร": "การไฟฟ้านครหลวง เขตยานนาวา", "ยานนาวา": "การไฟฟ้านครหลวง เขตยานนาวา",
        "ราษฎร์บูรณะ": "การไฟฟ้านครหลวง เขตราษฎร์บูรณะ", "ดุสิต": "การไฟฟ้านครหลวง เขตสามเสน",
        "พญาไท": "การไฟฟ้านครหลวง เขตสามเสน", "ราชเทวี": "การไฟฟ้านครหลวง เขตสามเสน",
        "บางซื่อ": "การไฟฟ้านครหลวง เขตสามเสน", "ดินแดง": "การไฟฟ้านครหลวง เขตสามเสน",
        "หลักสี่": "การไฟฟ้านครหลวง เขตบางเขน",
    },
}
# Names in the data that are not district branches or stations, so never a district's local agency.
NOT_LOCAL = re.compile(r"MEA$|ฝ่ายบริหารโครงการ|งานศูนย์ควบคุมจราจร|^กองบ")
# A forward to a station outside Bangkok (e.g. สน.บางเสาธง, Samut Prakan) from a Bangkok district
# is a slip in the data; stations are only counted for districts where they plausibly sit.
IGNORED_VOTES = {("บางกอกใหญ่", "สน.บางเสาธง"), ("ภาษีเจริญ", "สน.บางเสาธง")}

_FORWARD_NOTE = re.compile(r"^\s*(.+?)\s+ส่งต่อไปยัง\s+(.+?)\s*$")


def kind_of(name: str) -> tuple[str, str | None]:
    """(kind, parent) of an agency from its name; ``("other", None)`` when no pattern fits."""
    for pattern, kind, parent in KIND_PATTERNS:
        if re.search(pattern, name):
            if kind == "district_office" and not name.startswith("สำนักงานเขต"):
                district = name.split("เขต", 1)[1]
                return kind, f"สำนักงานเขต{district}"
            return kind, parent
    return "other", None


def _canonical(name: str) -> str:
    """The directory spelling of a data name: ``เขตบางนา`` -> ``สำนักงานเขตบางนา``."""
    return f"สำนักงาน{name}" if re.fullmatch(r"เขต\S+", name) else name


def _local_coverage(votes: Counter[tuple[str, str]], districts: list[str], known: dict[str, str]
                    ) -> tuple[dict[str, str], dict[str, list[str]], set[str]]:
    """Primary agency per district (by votes, else known), other agencies seen per district."""
    primary: dict[str, str] = {}
    also: dict[str, list[str]] = {}
    from_knowledge: set[str] = set()
    for d in districts:
        seen = [(a, n) for (dd, a), n in votes.items() if dd == d]
        if seen:
            best = max(n for _, n in seen)
            top = [a for a, n in seen if n == best]
            named = [a for a in top if a.endswith(d)]
            primary[d] = (named or top)[0]
            also[d] = [a for a, _ in seen if a != primary[d]]
        elif d in known:
            primary[d] = known[d]
            from_knowledge.add(d)
    return primary, also, from_knowledge


def build_directory(forwards: pd.DataFrame, tickets: pd.DataFrame) -> dict[str, Any]:
    """The directory as a dict (see ``triage.routing.Directory``) from forwards and tickets.

    ``forwards``: district, forwarded_from, forwarded_to; ``tickets``: district, province, note.
    """
    bkk = tickets[tickets["province"] == BANGKOK]["district"].dropna().astype(str)
    districts = sorted(d for d in bkk.unique() if d)
    names: list[str] = []
    for col in ("forwarded_from", "forwarded_to"):
        names += forwards[col].dropna().astype(str).str.strip().tolist()
    for note in tickets["note"].dropna().astype(str):
        m = _FORWARD_NOTE.match(note)
        if m:
            names += [m.group(1), m.group(2)]

    agencies: dict[str, dict[str, Any]] = {}
    for d in districts:
        agencies[f"สำนักงานเขต{d}"] = {"kind": "district_office", "parent": BMA, "districts": [d], "aliases": [f"เขต{d}"]}
    for name, spec in EXTRA_AGENCIES.items():
        agencies.setdefault(name, dict(spec))
    for raw in dict.fromkeys(names):
        name = _canonical(raw)
        if name in agencies:
            continue
        kind, parent = kind_of(raw)
        if parent is not None and _canonical(parent) not in agencies and parent not in names:
            parent = None
        agencies[name] = {"kind": kind} | ({"parent": _canonical(parent)} if parent else {})

    sources: dict[str, list[str]] = {}
    for kind, prefix in (("police", "สน."), ("electricity", "การไฟฟ้านครหลวง")):
        rows = forwards[forwards["forwarded_to"].astype(str).str.startswith(prefix)]
        votes: Counter[tuple[str, str]] = Counter(
            (str(d), str(a).strip()) for d, a in zip(rows["district"], rows["forwarded_to"])
            if not NOT_LOCAL.search(str(a)) and (str(d), str(a).strip()) not in IGNORED_VOTES)
        primary, also, known = _local_coverage(votes, districts, KNOWN_PRIMARY[kind])
        for d, a in primary.items():
            entry = agencies.setdefault(a, {"kind": kind, "parent": METRO_POLICE if kind == "police" else MEA_HQ})
            entry.setdefault("districts", []).append(d)
            if d in known:
                sources.setdefault(a, []).append(d)
        for d, others in also.items():
            for a in others:
                agencies[a].setdefault("also", []).append(d)

    provinces = tickets[(tickets["province"] != BANGKOK) & tickets["province"].notna()]
    provinces = provinces[provinces["province"].astype(str).str.strip().ne("")]
    for prov, group in provinces.groupby(provinces["province"].astype(str).str.replace("จังหวัด", "")):
        if prov == BANGKOK:
            continue
        amphoes = sorted({str(d) for d in group["district"].dropna() if str(d) and str(d) not in districts})
        agencies[f"ศูนย์ดำรงธรรมจังหวัด{prov}"] = {"kind": "damrongdhamma", "parent": NATIONAL_CENTRE,
                                                 "districts": amphoes}
    for name, from_knowledge in sources.items():
        agencies[name]["from_knowledge"] = from_knowledge
    return {"bangkok_districts": districts, "agencies": dict(sorted(agencies.items(), key=lambda kv: (kv[1]["kind"], kv[0])))}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(directory: dict[str, Any], header: str = "") -> str:
    """Write the directory dict as TOML (strings, numbers, lists and one level of tables)."""
    lines = [header.rstrip(), ""] if header else []
    lines.append(f"bangkok_districts = {_toml_value(directory['bangkok_districts'])}")
    kind = None
    for name, spec in directory["agencies"].items():
        if spec["kind"] != kind:
            kind = spec["kind"]
            lines += ["", f"# ---- {kind} ----"]
        lines += ["", f"[agencies.{_toml_value(name)}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in spec.items()]
    return "\n".join(lines) + "\n"


HEADER = """# The agency directory: every agency a complaint can be routed to, by its official name.
# Built by `python -m triage.tools.build_directory` from ../shared/data (see that module's docstring),
# then edited by hand. Fields: kind (see routing.toml [kinds]); parent (escalation, must exist, no loops);
# districts: the districts where this agency is the local one of its kind (a Bangkok district's
# police station / MEA branch; a province centre's อำเภอ); also: districts it serves in part;
# aliases: other spellings seen in the data; from_knowledge: districts whose coverage is public knowledge,
# not read from the data (check these first)."""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build the agency directory from the shared data.")
    ap.add_argument("--data", default="../shared/data", type=Path)
    ap.add_argument("--out", default=Path(__file__).resolve().parent.parent / "resources" / "agencies.toml", type=Path)
    a = ap.parse_args(argv)
    forwards = pd.read_csv(a.data / "routing" / "traffy-forwards.csv")
    tickets = pd.concat([pd.read_parquet(p, columns=["district", "province", "note"])
                         for p in sorted((a.data / "traffy").glob("*.parquet"))])
    directory = build_directory(forwards, tickets)
    a.out.write_text(to_toml(directory, HEADER), encoding="utf-8")
    kinds = Counter(spec["kind"] for spec in directory["agencies"].values())
    print(f"wrote {a.out}: {len(directory['agencies'])} agencies, {len(directory['bangkok_districts'])} Bangkok districts; "
          + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))


if __name__ == "__main__":
    main()
