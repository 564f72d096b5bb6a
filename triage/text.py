"""Thai text handling: normalisation, personal-data masking and tokenisation.

This is the only module that calls a tokenizer. Everything that turns raw complaint text
into features (training, prediction, explanations) goes through :func:`normalize` and
:func:`tokenize` here, so the model sees the same text at training and serving time.

Placeholders: URLs, e-mail addresses, phone numbers and 13-digit national ID numbers are
replaced by the tokens ``urltoken``, ``emailtoken``, ``phonetoken`` and ``idtoken``; they carry
no topic signal and must never reach a log or a training file.
"""

from __future__ import annotations

import os
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

# pythainlp must never try the network nor write to the home directory.
os.environ.setdefault("PYTHAINLP_OFFLINE", "1")
os.environ.setdefault("PYTHAINLP_READ_ONLY", "1")

MAX_TOKENIZE_CHARS = 5000
"""Longer texts are cut before tokenising: complaints are short, and it bounds the work."""

PLACEHOLDERS = ("urltoken", "emailtoken", "phonetoken", "idtoken", "nametoken")

_ZERO_WIDTH = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\u00ad]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# The look-behind makes a match start only at the head of a word: no quadratic scans.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")
# 13-digit Thai national ID, written plain or as 1-2345-67890-12-3.
# Separators people put between digit groups: spaces, dots, hyphens and the dashes a phone
# keyboard or word processor substitutes for them (en dash, em dash, minus sign).
_SEP = "[ .\\-\u2010-\u2015\u2212]"
_NATIONAL_ID = re.compile(
    rf"(?<!\d)\d{_SEP}?\d{{4}}{_SEP}?\d{{5}}{_SEP}?\d{{2}}{_SEP}?\d(?!\d)"
)
# Thai phone numbers: 0X-XXX-XXXX, 0XX-XXX-XXXX, +66 X XXXX XXXX, with spaces/dashes/dots.
# Also written digit by digit with spaces (0 8 1 2 3 4 5 6 7 8) or with dashes (081–234–5678).
_PHONE = re.compile(rf"(?<![\d/])(?:\+?66{_SEP}?|0{_SEP}?)\d(?:{_SEP}{{0,2}}\d){{7,8}}(?![\d/])")
# A phone number spelt out in Thai number words: ศูนย์แปดหนึ่ง สองสามสี่ ... (nine or more words).
_DIGIT_WORDS = "ศูนย์|หนึ่ง|สอง|สาม|สี่|ห้า|หก|เจ็ด|แปด|เก้า|โอ"
_PHONE_WORDS = re.compile(rf"(?:(?:{_DIGIT_WORDS})[ \-\u2013]?){{9,}}")
# LINE ids: "line id: somchai_1990", "ไลน์ @shop", "ไอดีไลน์ abc.def".
_LINE_ID = re.compile(
    r"((?:line|ไลน์|ไลน)\s*(?:id|ไอดี)?|(?:id|ไอดี)\s*(?:line|ไลน์|ไลน))\s*[:：=]?\s*@?[A-Za-z0-9._\-]{3,40}",
    re.IGNORECASE,
)
# A person's name after a Thai title: นาย สมชาย, นางสาวสมศรี, คุณวิไล, ด.ช.สมปอง. Abbreviated
# titles count only at the start of a word (ร้านส.หน้าวัง is a shop, not นส.).
_NAME = re.compile(
    r"(นางสาว|นาย|นาง|คุณ|เด็กชาย|เด็กหญิง|(?<![ก-๙])(?:น\.ส\.|นส\.|ด\.ช\.|ด\.ญ\.|ดช\.|ดญ\.))(?!ภาพ|ค่า|สมบัติ|ธรรม|หญิง|ชาย|ยาย|ตา|ป้า|ลุง|แม่|พ่อ|คน|ท่าน|ครู|หมอ|ทาง|จ้าง|ก)"
    r"\s?[ก-๙]{2,20}(?:\s[ก-๙]{2,25})?"
)
_LAUGH = re.compile(r"5{4,}")
# Any character (Thai vowel, tone mark, ๆ, letter, punctuation) repeated three times or more.
_REPEAT = re.compile(r"(\D)\1{2,}")
_SPACES = re.compile(r"\s+")
_THAI_DIGITS = str.maketrans("๐๑๒๓๔๕๖๗๘๙", "0123456789")
_ANY_THAI_DIGIT = re.compile("[๐-๙]")
_ANY_DIGIT = re.compile(r"\d")


@lru_cache(maxsize=1)
def _reorder_pairs() -> list[tuple[Any, str]]:
    """pythainlp's ``reorder_vowels`` substitutions (``_REORDER_PAIRS``), compiled once and each skipping a text
    without a letter it needs (``triage.prefilter``); its function looks each pattern up in ``re``'s cache."""
    import importlib

    from triage.prefilter import Prefiltered

    pairs: list[tuple[str, str]] = importlib.import_module("pythainlp.util.normalize")._REORDER_PAIRS
    return [(Prefiltered(re.compile(pattern), most=3), repl) for pattern, repl in pairs]


def reorder_vowels(text: str) -> str:
    """``pythainlp.util.reorder_vowels`` (the same substitutions in the same order), faster."""
    for pattern, repl in _reorder_pairs():
        text = pattern.sub(repl, text)
    return text


@lru_cache(maxsize=1)
def _thai_marks() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """Patterns for pythainlp's rules on repeated vowels, tone marks and dangling marks.

    pythainlp's ``normalize`` runs 27 separate substitutions per text (70% of the time on
    Traffy texts); one back-referencing pattern does the same job.
    """
    import pythainlp as p

    norepeat = f"{p.thai_follow_vowels}{p.thai_lead_vowels}{p.thai_above_vowels}{p.thai_below_vowels}\u0e3a\u0e4c\u0e4d\u0e4e"
    dangling = f"{p.thai_above_vowels}{p.thai_below_vowels}{p.thai_tonemarks}\u0e3a\u0e4c\u0e4d\u0e4e"
    return (
        re.compile(f"([{norepeat}])(?: *\\1)+"),
        re.compile(f"[{p.thai_tonemarks}]{{2,}}"),
        re.compile(f"(?:^| )[{dangling}]+"),
    )


def _thai_normalize(text: str) -> str:
    norepeat, tones, dangling = _thai_marks()
    text = reorder_vowels(text)
    text = norepeat.sub(r"\1", text)
    text = tones.sub(lambda m: m.group(0)[-1], text)
    return dangling.sub(lambda m: " " if m.group(0).startswith(" ") else "", text)


@lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    """Return a canonical form of complaint text for models and masking.

    Unicode NFC, zero-width and control characters removed, Thai digits made Arabic,
    pythainlp's normalisation (duplicated vowels and tone marks), character runs collapsed
    (``ค่ะะะะ`` -> ``ค่ะ``, ``55555`` -> ``555``, ``ๆๆๆ`` -> ``ๆ``), URLs, e-mails, national IDs
    and phone numbers replaced by placeholders, whitespace folded. Idempotent.
    The last 4,096 texts' forms are kept: a served complaint is normalised for the model and again
    for the name checks of what is shown (``has_titled_name``, ``name_tokens``).
    """
    text = unicodedata.normalize("NFC", text)
    text = _ZERO_WIDTH.sub("", text)
    text = _CONTROL.sub(" ", text)
    if _ANY_THAI_DIGIT.search(text):  # (translate is slow on Thai text even where it changes nothing)
        text = text.translate(_THAI_DIGITS)
    if "5555" in text:
        text = _LAUGH.sub("555", text)
    text = _REPEAT.sub(r"\1", text)
    text = _thai_normalize(text)
    text = _URL.sub(" urltoken ", text)
    if "@" in text:
        text = _EMAIL.sub(" emailtoken ", text)
    if _ANY_DIGIT.search(text):  # both need digits
        text = _NATIONAL_ID.sub(" idtoken ", text)
        text = _PHONE.sub(" phonetoken ", text)
    text = _SPACES.sub(" ", text).strip()
    return text.lower()


def mask_personal(text: str) -> str:
    """Mask personal data for logs, exports and reviewers' lists.

    Phone numbers (also spaced digit by digit, with dashes, or spelt in Thai number words),
    national IDs, e-mails, LINE ids and names after a Thai title (นาย, นางสาว, คุณ, ด.ช., ด.ญ., ...)
    become placeholders;
    the rest of the text is kept as written so a reviewer can still read it.
    ``โทร 081-234-5678 นายสมชาย`` -> ``โทร [phone] นาย[name]``.
    """
    text = _ZERO_WIDTH.sub("", unicodedata.normalize("NFC", text)).translate(_THAI_DIGITS)
    text = _EMAIL.sub("[email]", text)
    text = _NATIONAL_ID.sub("[national-id]", text)
    text = _PHONE.sub("[phone]", text)
    text = _PHONE_WORDS.sub("[phone]", text)
    text = _LINE_ID.sub(lambda m: f"{m.group(1)} [line-id]", text)
    text = _NAME.sub(lambda m: f"{m.group(1)}[name]", text)
    return text


def has_letters(text: str) -> bool:
    """True when the text has at least one letter or digit (in any script) to classify."""
    return any(ch.isalnum() for ch in text)


@lru_cache(maxsize=1)
def _dictionary() -> str:
    """Load pythainlp's word list (62k words) into nlpo3 once per process."""
    import nlpo3
    import pythainlp.corpus

    path = Path(pythainlp.corpus.__file__).parent / "words_th.txt"
    name = "triage_words_th"
    nlpo3.load_dict(str(path), name)
    return name


_SPLIT = re.compile(r"[\s\"'`“”‘’()\[\]{}<>,;:!?|/\\*#=~^]+")


def tokenize(text: str) -> list[str]:
    """Split normalised text into words with newmm (nlpo3, the Rust port of pythainlp's newmm).

    Safe mode bounds the search on ambiguous runs, and the input is cut at
    MAX_TOKENIZE_CHARS, so no input can make it hang. Spaces and punctuation are dropped.
    ``ไฟฟ้าดับทั้งซอย`` -> ``['ไฟฟ้า', 'ดับ', 'ทั้ง', 'ซอย']``.
    The last TOKEN_CACHE texts' words are kept: prediction and routing ask for the same text's words.
    """
    return list(_tokens(text))


TOKEN_CACHE = 8192
"""How many texts' words ``tokenize`` keeps (a few MB): one served batch or CLI chunk of 2,000 texts, tokenised once
(with the agency model's forms of them without the intake boilerplate, up to 4,000 texts a chunk)."""


@lru_cache(maxsize=TOKEN_CACHE)
def _tokens(text: str) -> tuple[str, ...]:
    import nlpo3

    text = text[:MAX_TOKENIZE_CHARS]
    name = _dictionary()
    tokens: list[str] = []
    for chunk in _SPLIT.split(text):
        if not chunk:
            continue
        if chunk in PLACEHOLDERS or chunk.isascii():
            tokens.append(chunk)
            continue
        tokens.extend(t for t in nlpo3.segment(chunk, name, safe=True) if t.strip() and t != ".")
    return tuple(tokens)


def word_analyzer(text: str) -> list[str]:
    """scikit-learn analyzer: word unigrams and bigrams of already normalised text.

    Module-level so that a pipeline using it pickles.
    """
    words = list(_tokens(text))
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


def _normalize_chunk(texts: list[str]) -> list[str]:
    return [normalize(t) for t in texts]


def normalize_many(texts: list[str], n_jobs: int = 2, chunk: int = 20_000) -> list[str]:
    """Normalise many texts, in parallel processes for large inputs (training)."""
    if len(texts) < 2 * chunk or n_jobs == 1:
        return _normalize_chunk(texts)
    from joblib import Parallel, delayed

    parts = Parallel(n_jobs=n_jobs)(delayed(_normalize_chunk)(texts[i : i + chunk]) for i in range(0, len(texts), chunk))
    return [t for part in parts for t in part]


def _name_spans(norm: str) -> list[tuple[int, int]]:
    """Where the names (not their titles) of titled names are in a normalised text: (start, end) pairs."""
    return [(m.end(1), m.end()) for m in _NAME.finditer(norm)]


def has_titled_name(text: str) -> bool:
    """True when the text has a name after a Thai title (what ``mask_personal`` masks as ``[name]``)."""
    return _NAME.search(normalize(text)) is not None


def name_tokens(text: str) -> set[str]:
    """The words of ``text`` (as ``tokenize`` splits its normalised form) that occur only inside titled names.

    An explanation must not show them: ``นายสมชาย ใจดี แจ้งไฟดับ`` -> ``{"สม", "ชาย", "ใจดี"}`` (how the
    tokenizer cuts the name in its context), while a word that also occurs outside a name is kept.
    """
    norm = normalize(text)
    masked = _NAME.sub(lambda m: f"{m.group(1)} nametoken ", norm)
    if masked == norm:
        return set()
    return set(tokenize(norm)) - set(tokenize(normalize(masked)))


def mask_names_in(shown: str, text: str) -> str:
    """``shown``, a piece of the normalised ``text`` (an urgency cue's phrase), with the parts that lie
    inside a titled name replaced by ``[name]``, even when the piece starts or ends inside the name.

    ``mask_names_in("สายไฟหน้าบ้านนายสมชาย ใจดีขาด", "สายไฟหน้าบ้านนายสมชาย ใจดีขาดห้อย")`` ->
    ``"สายไฟหน้าบ้านนาย[name]ขาด"``. A piece not found in the text is masked with ``mask_personal``.
    """
    norm = normalize(text)
    spans = _name_spans(norm)
    if not spans or not shown:
        return shown
    hidden = [False] * len(shown)
    start, found = norm.find(shown), False
    while start >= 0:
        found = True
        for a, b in spans:
            for j in range(max(a, start), min(b, start + len(shown))):
                hidden[j - start] = True
        start = norm.find(shown, start + 1)
    if not found:
        return mask_personal(shown)
    out: list[str] = []
    for ch, hide in zip(shown, hidden):
        if not hide:
            out.append(ch)
        elif not out or out[-1] != "[name]":
            out.append("[name]")
    return "".join(out)
