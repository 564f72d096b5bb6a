"""Regular expressions that skip texts they cannot match: a literal every match must contain, looked for first.

The urgency cues (``triage.model.Lexicon``) and the routing rules (``triage.routing.Rule``) search
every complaint with about 35 patterns of Thai words joined by ``|`` and gaps such as
``.{0,25}``; Python's ``re`` tries each alternative at almost every position, and most complaints
match none of them. ``required_literals`` reads a pattern's parse tree (``re._parser``, the
parser ``re.compile`` uses) for a set of strings at least one of which any match must contain:
a run of literal characters that the match cannot skip, or, for an alternation, one such set per
alternative joined. ``Prefiltered.search`` looks for those strings with ``str``'s substring search
(``in``, in C) and runs the pattern only when one is there, so its answer is always the pattern's
own: a text without any of them has no match.
"""

from __future__ import annotations

import re
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser as P  # type: ignore[attr-defined]
from typing import Any

_REPEATS = {C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", C.MAX_REPEAT)}


def _minimal(strings: frozenset[str]) -> frozenset[str]:
    """Without the strings that contain another of the set (where the shorter one is absent, so are they)."""
    return frozenset(x for x in strings if not any(y != x and y in x for y in strings))


def _rank(strings: frozenset[str]) -> tuple[bool, int, int]:
    """How good a set is as a filter (higher is better): no one-letter string (found in most texts), then
    few strings (each is a substring search), then long ones."""
    shortest = min(map(len, strings))
    return shortest >= 2, -len(strings), shortest


def _best(candidates: list[frozenset[str]]) -> frozenset[str] | None:
    return max(candidates, key=_rank) if candidates else None


def _necessary(seq: Any, flags: int) -> list[frozenset[str]]:
    """Sets of strings such that every match of the parsed sequence ``seq`` contains one string of each set
    (each set from a part of the sequence that every match must go through); [] if none is known."""
    candidates: list[frozenset[str]] = []
    run: list[str] = []
    for op, av in seq:
        if op == C.LITERAL and not flags & re.IGNORECASE:
            run.append(chr(av))
            continue
        if run:
            candidates.append(frozenset(["".join(run)]))
            run = []
        if op == C.SUBPATTERN:
            _group, add_flags, del_flags, inner = av
            candidates += _necessary(inner, (flags | add_flags) & ~del_flags)
        elif op == C.BRANCH:
            alternatives = [_best(_necessary(branch, flags)) for branch in av[1]]
            if all(alternatives):
                candidates.append(frozenset().union(*alternatives))  # type: ignore[arg-type]
        elif op in _REPEATS and av[0] >= 1:
            candidates += _necessary(av[2], flags)
    if run:
        candidates.append(frozenset(["".join(run)]))
    return [_minimal(c) for c in candidates if c and all(c)]


def required_literals(pattern: re.Pattern[str]) -> list[frozenset[str]]:
    """Sets of strings such that every match of ``pattern`` contains at least one string of each set, the
    most selective first ([]: none is known, e.g. for a pattern that can match the empty string or that
    ignores case)."""
    if not isinstance(pattern.pattern, str) or pattern.flags & re.IGNORECASE:
        return []
    found = _necessary(P.parse(pattern.pattern, pattern.flags), pattern.flags)
    return sorted(set(found), key=lambda s: (_rank(s), sorted(s)), reverse=True)


class LiteralScan:
    """The required strings of several ``Prefiltered`` patterns that search the same texts, found in one pass.

    One Aho-Corasick automaton (pyahocorasick, in C) holds every string; ``found(text)`` is the set of
    those (their numbers) that occur in the text, every occurrence counted, overlapping ones too, so
    "a string of the set is in the text" is exactly ``s in text`` for one of them. The answer for the
    last ``KEEP`` texts is kept: the urgency cues and the routing rules and places ask about the same
    normalised complaint some 40 times (``NORMALISED``). Without pyahocorasick each pattern looks
    for its own strings with ``in``, as before.
    """

    KEEP = 8192

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}
        self._automaton: Any = None
        self._found: dict[str, frozenset[int]] = {}

    def register(self, strings: tuple[str, ...]) -> frozenset[int] | None:
        """The numbers of ``strings`` (added to the automaton, rebuilt at its next use); None without pyahocorasick."""
        if _ahocorasick is None:
            return None
        out = []
        for s in strings:
            n = self.numbers.get(s)
            if n is None:
                n = self.numbers[s] = len(self.numbers)
                self._automaton = None
                self._found = {}
            out.append(n)
        return frozenset(out)

    def found(self, text: str) -> frozenset[int]:
        """The numbers of the registered strings that occur in ``text``."""
        known = self._found
        hit = known.get(text)
        if hit is None:
            automaton = self._automaton
            if automaton is None:
                automaton = _ahocorasick.Automaton()
                for s, n in list(self.numbers.items()):  # (a copy: another thread may register a pattern)
                    automaton.add_word(s, n)
                automaton.make_automaton()
                self._automaton = automaton
            hit = frozenset([n for _end, n in automaton.iter(text)])
            if len(known) >= self.KEEP:
                known.clear()
            known[text] = hit
        return hit


try:
    import ahocorasick as _ahocorasick
except ImportError:  # pragma: no cover - a dependency; the patterns then look for their strings one by one
    _ahocorasick = None

NORMALISED = LiteralScan()
"""The scan shared by the patterns that search normalised complaints: urgency cues, routing rules, places."""


class Prefiltered:
    """``pattern.search`` that answers None at once for a text holding none of the pattern's required literals."""

    __slots__ = ("pattern", "required", "scan", "numbers")

    def __init__(self, pattern: re.Pattern[str], most: int = 1, scan: LiteralScan | None = None) -> None:
        self.pattern = pattern
        self.required = tuple(tuple(sorted(found, key=lambda x: (len(x), x))) for found in required_literals(pattern)[:most])
        """At most ``most`` sets (each costs a few substring searches), the most selective first."""
        self.scan = scan
        numbers = [scan.register(strings) for strings in self.required] if scan is not None else []
        self.numbers: tuple[frozenset[int], ...] | None = (
            tuple(n for n in numbers if n is not None) if scan is not None and all(n is not None for n in numbers) else None)
        """Each required set as the numbers of its strings in ``scan`` (None: looked for with ``in``)."""

    def may_match(self, text: str) -> bool:
        """False when ``text`` lacks every string of one of the required sets: then the pattern cannot match."""
        if self.numbers is not None and self.scan is not None:
            if not self.numbers:
                return True
            found = self.scan.found(text)
            for numbers in self.numbers:
                if found.isdisjoint(numbers):
                    return False
            return True
        for strings in self.required:
            for s in strings:
                if s in text:
                    break
            else:
                return False
        return True

    def search(self, text: str) -> re.Match[str] | None:
        return self.pattern.search(text) if self.may_match(text) else None

    def sub(self, repl: Any, text: str) -> str:
        """``pattern.sub(repl, text)``."""
        return self.pattern.sub(repl, text) if self.may_match(text) else text


class FirstOf:
    """``re.compile("|".join(f"(?:{p})" for p in sources)).search``, each alternative prefiltered on its own.

    An alternation of long patterns (an urgency cue group: ``ถนน.{0,20}ถล่ม``, ``ฝาท่อ.{0,20}หาย``, ...)
    needs only one string of the union of its alternatives' strings, often a common word such as
    ถนน, so ``Prefiltered`` lets most complaints through to a slow search. Here the whole pattern's test
    comes first (one look at the shared scan), then each alternative whose own strings (up to three sets)
    are all there is searched, and the match that starts first wins, the earliest alternative among
    those starting at the same place: what the alternation finds (leftmost, then the first
    alternative that matches there; an alternative's own leftmost match is the one it gives at that
    place). The match's span and ``group(0)`` are the alternation's; its groups are numbered in its
    alternative only. (``tests/test_prefilter.py`` compares them on real complaints.)
    """

    __slots__ = ("whole", "parts")

    def __init__(self, sources: list[str], flags: int = 0, scan: LiteralScan | None = None) -> None:
        self.whole = Prefiltered(re.compile("|".join(f"(?:{p})" for p in sources), flags), scan=scan)
        self.parts = [Prefiltered(re.compile(f"(?:{p})", flags), most=3, scan=scan) for p in sources]

    def search(self, text: str) -> re.Match[str] | None:
        if not self.whole.may_match(text):
            return None
        best = None
        for part in self.parts:
            if part.may_match(text):
                m = part.pattern.search(text)
                if m is not None and (best is None or m.start() < best.start()):
                    best = m
        return best
