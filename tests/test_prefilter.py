"""``triage.prefilter``: a pattern that skips texts lacking its required words finds exactly what the pattern finds."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from triage.model import Lexicon
from triage.prefilter import NORMALISED, FirstOf, LiteralScan, Prefiltered, required_literals
from triage.routing import Router
from triage.text import normalize_many


def _found(pattern: re.Pattern[str] | Prefiltered, text: str) -> tuple[tuple[int, int], tuple[str | None, ...]] | None:
    m = pattern.search(text)
    return (m.span(), (m.group(0), *m.groups())) if m else None


@pytest.mark.unit
@pytest.mark.parametrize("source, must_have", [  # (among others: the common first letter of ห้อย|หย่อน ...)
    ("สายไฟ(ฟ้า)?(ห้อย|หย่อน)", [{"สายไฟ"}]),
    ("ไฟไหม้|เพลิงไหม้|เผา.{0,10}(ขยะ|หญ้า)", [{"ไฟไหม้", "เพลิงไหม้", "เผา"}]),
    ("(ต้นไม้|กิ่งไม้|กิ่ง|ต้น).{0,25}(ล้ม|หัก)", [{"กิ่ง", "ต้น"}, {"ล้ม", "หัก"}]),
    ("a(b)+c", [{"a"}, {"b"}, {"c"}]),
])
def test_the_required_strings_of_a_pattern(source, must_have):
    found = [set(strings) for strings in required_literals(re.compile(source))]
    assert all(strings in found for strings in must_have), found


@pytest.mark.unit
@pytest.mark.parametrize("source", ["(?i)mea", "a?b?", "x*", ".{0,3}", "[ab]c?", "(?:a|)", "\\d+"])
def test_no_strings_where_a_match_needs_none_or_case_is_ignored(source):
    assert required_literals(re.compile(source)) == []
    assert Prefiltered(re.compile(source)).required == ()


AWKWARD = ["", "mea", "MEA", "xmeax", "a mea b", "สายไฟห้อย", "สายไฟฟ้าหย่อน", "สายไฟ", "เผาขยะ", "เผา 1234567890ขยะ",
           "เผา12345678901ขยะ", "ต้นไม้ล้ม", "กิ่ง ล้ม", "abbbc", "ac", "abc?", "\n", "ก" * 3000]
PATTERNS = ["\\bmea\\b", "(?i)mea", "สายไฟ(ฟ้า)?(ห้อย|หย่อน)", "เผา.{0,10}(ขยะ|หญ้า)", "(ต้นไม้|กิ่งไม้|กิ่ง|ต้น).{0,25}(ล้ม|หัก)",
            "a(b)+c", "ab*c", "(?<!ก)ล้ม", "สถานีรถไฟ(?!ฟ้า)", "(?:a|)c", "\\?", "[กข]ิ่ง"]


@pytest.mark.unit
@pytest.mark.parametrize("source", PATTERNS)
def test_a_prefiltered_pattern_finds_what_the_pattern_finds(source):
    pattern = re.compile(source)
    fast = Prefiltered(pattern)
    for text in AWKWARD:
        assert _found(fast, text) == _found(pattern, text), text


@pytest.mark.unit
def test_patterns_sharing_one_literal_scan_find_what_each_pattern_finds():
    """With a ``LiteralScan`` (one Aho-Corasick pass for the required strings of every pattern that shares it:
    overlapping strings, a string inside another, one pattern's string in another's) the answers are the same."""
    pytest.importorskip("ahocorasick")
    scan = LiteralScan()
    patterns = [re.compile(source) for source in PATTERNS]
    shared = [Prefiltered(p, scan=scan) for p in patterns]
    assert all(fast.numbers is not None for fast in shared) and len(scan.numbers) >= 8
    texts = AWKWARD + ["สายไฟห้อยต้นไม้ล้ม", "ต้นต้นไม้หัก", "ไฟไหม้เผาหญ้า", "aabcc mea"]
    for text in texts + texts:  # the second time from the kept answers
        for pattern, fast in zip(patterns, shared):
            assert _found(fast, text) == _found(pattern, text), (pattern.pattern, text)
            assert fast.may_match(text) == Prefiltered(pattern).may_match(text), (pattern.pattern, text)
    late = Prefiltered(re.compile("หย่อน|ห้อย"), scan=scan)  # a pattern added later: the automaton is remade
    assert [late.may_match(t) for t in texts] == [("หย่อน" in t or "ห้อย" in t) for t in texts]


def test_the_shipped_patterns_find_the_same_on_real_complaints(traffy_slice: Path):
    """Every urgency cue group, routing rule phrase and exception, and district/place pattern, on 2,000 real texts."""
    last = max((traffy_slice / "traffy").glob("*.parquet"))
    texts = pd.read_parquet(last, columns=["comment"])["comment"].dropna().tolist()[:2000]
    norms = normalize_many(texts) + AWKWARD
    router = Router.load()
    patterns = list(Lexicon.load().compiled)
    patterns += [p for rule in router.table.rules for p in (rule.pattern, rule.unless) if p is not None]
    assert router.places is not None
    places = [getattr(router.places, name) for name in ("_district", "_sub", "_place")]
    patterns += [p.pattern for p in places if p is not None]
    filtered = sum(1 for p in patterns if Prefiltered(p).required)
    assert len(patterns) > 35 and filtered >= len(patterns) - 2  # (nearly) all of them can skip texts
    skipped = 0
    for pattern in patterns:
        fast = Prefiltered(pattern)
        shared = Prefiltered(pattern, scan=NORMALISED)  # as the shipped code makes them: one scan for all
        for norm in norms:
            expected = _found(pattern, norm)
            assert _found(fast, norm) == expected, (pattern.pattern[:60], norm[:60])
            assert _found(shared, norm) == expected, (pattern.pattern[:60], norm[:60])
            skipped += expected is None and not any(any(s in norm for s in strings) for strings in fast.required)
    assert skipped > len(norms) * len(patterns) // 2  # most searches are skipped


def test_the_cue_groups_searched_alternative_by_alternative_find_what_each_group_finds(traffy_slice: Path):
    """``FirstOf`` (what ``Lexicon.matches`` searches with) gives the alternation's match: the same span and text,
    on 2,000 real complaints and the awkward texts, with and without a shared scan."""
    last = max((traffy_slice / "traffy").glob("*.parquet"))
    texts = pd.read_parquet(last, columns=["comment"])["comment"].dropna().tolist()[:2000]
    norms = normalize_many(texts) + AWKWARD + ["ถนนทรุดตัว ฝาท่อหาย", "ฝาท่อหาย ถนนทรุดตัว", "ไม่มีฝาท่อ ฝาท่อหาย"]
    lexicon = Lexicon.load()
    searchers = lexicon._searchers
    assert len(searchers) == len(lexicon.compiled) > 5
    assert all(isinstance(s, FirstOf) for s in searchers)
    plain = [FirstOf(list(pats)) for pats in lexicon.groups.values()]  # each alternative looked for with `in`
    matched = 0
    for pattern, fast, slow in zip(lexicon.compiled, searchers, plain):
        for norm in norms:
            m = pattern.search(norm)
            expected = (m.span(), m.group(0)) if m else None
            for got in (fast.search(norm), slow.search(norm)):
                assert ((got.span(), got.group(0)) if got else None) == expected, (pattern.pattern[:60], norm[:60])
            matched += m is not None
    assert matched > 100


@pytest.mark.unit
def test_first_of_takes_the_leftmost_match_then_the_first_alternative():
    first = FirstOf(["ab", "a", "b.{0,3}c", "xb"])
    pattern = re.compile("(?:ab)|(?:a)|(?:b.{0,3}c)|(?:xb)")
    for text in ["ab", "a", "ba", "xbc", "xab", "bxxc a", "", "zzz", "abab", "b c", "bxc ab"]:
        m, got = pattern.search(text), first.search(text)
        assert ((got.span(), got.group(0)) if got else None) == ((m.span(), m.group(0)) if m else None), text


def test_intake_boilerplate_is_only_looked_for_where_it_can_be(traffy_slice: Path):
    """``strip_intake`` skips the boilerplate pattern for texts without any string or character its matches need:
    the same result as the pattern itself on 2,000 real complaints and on each kind of boilerplate."""
    from triage.agency import _INTAKE, _SPACES, _may_have_intake, strip_intake

    last = max((traffy_slice / "traffy").glob("*.parquet"))
    texts = pd.read_parquet(last, columns=["comment"])["comment"].dropna().tolist()[:2000]
    samples = ["‘กรุณาอ่านข้อมูลบรรยายประกอบการปักหมุด’", "(สถานที่สำคัญ / จุดสังเกต)", "รหัสเรื่อง ab12", "คำร้องจาก line psc 1111",
               "ขอขอบคุณ เจ้าหน้าที่ทุกท่าน", "เลขรับแจ้ง: 123", "#1555", "ปัญหา : ไฟดับ", "เขต:บางนา", "😀", "**", "\u2600", "\u20e3",
               "ศูนย์เรื่องราวร้องทุกข์ ได้รับการประสานผ่านระบบการจัดการเรื่องราวร้องทุกข์ สำนักงานปลัดสำนักนายกรัฐมนตรี"]
    norms = normalize_many(texts) + samples + [f"ไฟดับ {s} ซอย 5" for s in samples] + AWKWARD
    for norm in norms:
        assert strip_intake(norm) == _SPACES.sub(" ", _INTAKE.sub(" ", norm)).strip(), norm[:60]
        if _INTAKE.search(norm):
            assert _may_have_intake(norm), norm[:60]
    assert all(_INTAKE.search(s) and _may_have_intake(s) for s in samples)
    assert sum(map(_may_have_intake, norms[:2000])) < 1000  # most complaints skip the pattern
