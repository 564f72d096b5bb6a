"""Agency routing: which agency must handle a complaint, primary first.

Pure core over two data files that an operator edits (``resources/``):

- ``agencies.toml``, the directory: every agency by its official Thai name, its kind (police,
  electricity, district_office, ...), the districts where it is the local agency of its kind,
  its parent for escalation and other spellings (aliases). Built from the data by
  ``triage.tools.build_directory``.
- ``routing.toml``, the table: how each kind resolves to a concrete agency (through the district
  for local kinds: the district's police station, MEA branch, district office) and the rules
  that give a complaint a kind, by predicted topic and by phrase (a hanging wire is the
  electricity authority's, a hanging telecom cable the regulator's).

- ``places.toml``: subdistricts (แขวง) and well-known places, to read the district from the text
  when the intake sends none (``Places``).

A learned model (``triage.agency.AgencyModel``, trained from real forwards and ordinary tickets at
their real rate) gives each kind a probability. With its calibration (issue 14) the router moves
the primary agency away from the district office only when the calibrated probability that the
other kind is right reaches the model's ``move_threshold_`` (0.5, the break-even point: a wrong
move costs as much as a missed forward); every other kind it believes in is listed, ranked, in
``agency_candidates``. A case goes to review only when the agency really is uncertain: a close call
on the kind, vague text, or a district the directory does not know. Both validators raise
``ConfigError`` naming the bad value.
"""

from __future__ import annotations

import math
import operator
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from triage.errors import ConfigError
from triage.prefilter import NORMALISED, Prefiltered
from triage.text import tokenize

RESOURCES = Path(__file__).with_name("resources")
DIRECTORY_PATH = RESOURCES / "agencies.toml"
TABLE_PATH = RESOURCES / "routing.toml"
PLACES_PATH = RESOURCES / "places.toml"
DISTRICT_OFFICE = "district_office"
_DEFAULT = "default handler"
_ALMOST_ONE = 1 - 1e-6
_NO_EVIDENCE = (0.0, 0.0)
_BY_SCORE = operator.itemgetter(1)
"""``sorted(pairs, key=_BY_SCORE, reverse=True)`` is ``sorted(pairs, key=lambda kv: -kv[1])``: both stable, ties in their order."""
_AGENCY_KEYS = {"kind", "parent", "districts", "also", "aliases", "from_knowledge"}


@lru_cache(maxsize=65_536)
def _has_letter(word: str) -> bool:
    """A word with at least one letter (not only digits or marks): what counts toward ``min_words``."""
    return any(ch.isalpha() for ch in word)


class KindModel(Protocol):
    """What the router needs from a learned agency model.

    A calibrated model (``triage.agency.AgencyModel`` since issue 14) also carries
    ``calibration_`` and ``move_threshold_``, read with ``getattr``; without them the router uses
    the older override/veto rule (``Router.decide``).
    """

    def kind_proba(self, norm: str) -> dict[str, float]: ...


@dataclass
class Places:
    """Reads a Bangkok district from complaint text: ``เขตบางนา``, ``เขต : บางนา``, ``แขวงคลองตัน``, ``สนามหลวง``.

    Used only when the intake sends no district. The first named district (``เขต``) wins, then a
    subdistrict (``แขวง``), then a well-known place; a text naming none gives None.
    """

    districts: tuple[str, ...]
    subdistricts: dict[str, str] = field(default_factory=dict)
    places: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], districts: tuple[str, ...], source: str = "places") -> Places:
        known = set(districts)
        out: dict[str, dict[str, str]] = {}
        for table in ("subdistricts", "places"):
            entries = raw.get(table) or {}
            if not isinstance(entries, dict):
                raise ConfigError(f"{source}: [{table}] must be a table of name = district")
            for name, district in entries.items():
                if district not in known:
                    raise ConfigError(f"{source}: {table[:-1]} {name!r} has district {district!r}, which is not a Bangkok district")
            out[table] = {str(k).lower(): str(v) for k, v in entries.items()}
        return cls(districts, out["subdistricts"], out["places"])

    @classmethod
    def load(cls, districts: tuple[str, ...], path: Path | None = None) -> Places:
        path = path or PLACES_PATH
        if not Path(path).exists():
            return cls(districts)
        return cls.from_dict(_read_toml(path, "place list"), districts, str(path))

    def _alternation(self, names: Any) -> str:
        return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))

    def __post_init__(self) -> None:
        d = self._alternation(self.districts)
        self._district = Prefiltered(re.compile(f"(?:สำนักงาน)?เขต\\s*:?\\s*({d})"), scan=NORMALISED) if d else None
        sub = self._alternation(self.subdistricts)
        self._sub = Prefiltered(re.compile(f"(?:แขวง|เเขวง)\\s*:?\\s*({sub})"), scan=NORMALISED) if sub else None
        pl = self._alternation(self.places)
        self._place = Prefiltered(re.compile(f"({pl})"), scan=NORMALISED) if pl else None

    def district_in(self, norm: str) -> str | None:
        """The district a normalised text names, or None."""
        if self._district is not None and (m := self._district.search(norm)):
            return m.group(1)
        if self._sub is not None and (m := self._sub.search(norm)):
            return self.subdistricts[m.group(1)]
        if self._place is not None and (m := self._place.search(norm)):
            return self.places[m.group(1)]
        return None


@dataclass(frozen=True)
class Agency:
    """One agency of the directory."""

    name: str
    kind: str
    parent: str | None = None
    districts: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


@dataclass
class Directory:
    """The agencies, validated: known parents, no parent loops, an office for every district."""

    agencies: dict[str, Agency]
    bangkok_districts: tuple[str, ...]
    _alias: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "directory") -> Directory:
        entries = raw.get("agencies")
        if not isinstance(entries, dict) or not entries:
            raise ConfigError(f"{source}: needs an [agencies] table with at least one agency")
        agencies: dict[str, Agency] = {}
        for name, spec in entries.items():
            if not isinstance(spec, dict):
                raise ConfigError(f"{source}: agency {name!r} must be a table")
            unknown = set(spec) - _AGENCY_KEYS
            if unknown:
                raise ConfigError(f"{source}: agency {name!r} has unknown keys {sorted(unknown)}; "
                                  f"known: {', '.join(sorted(_AGENCY_KEYS))}")
            kind = spec.get("kind")
            if not isinstance(kind, str) or not kind:
                raise ConfigError(f"{source}: agency {name!r} has no kind")
            agencies[name] = Agency(name, kind, spec.get("parent"), _str_list(spec.get("districts"), f"{name!r} districts"),
                                    _str_list(spec.get("also"), f"{name!r} also"), _str_list(spec.get("aliases"), f"{name!r} aliases"))
        directory = cls(agencies, _str_list(raw.get("bangkok_districts"), f"{source}: bangkok_districts"))
        directory._validate(source)
        return directory

    @classmethod
    def load(cls, path: Path | None = None) -> Directory:
        path = path or DIRECTORY_PATH
        return cls.from_dict(_read_toml(path, "agency directory"), str(path))

    def _validate(self, source: str) -> None:
        for a in self.agencies.values():
            if a.parent is not None and a.parent not in self.agencies:
                raise ConfigError(f"{source}: agency {a.name!r} has parent {a.parent!r}, which is not in the directory")
        for a in self.agencies.values():
            seen = [a.name]
            node = a
            while node.parent is not None:
                if node.parent in seen:
                    loop = " -> ".join(seen[seen.index(node.parent):] + [node.parent])
                    raise ConfigError(f"{source}: loop in parents: {loop}")
                seen.append(node.parent)
                node = self.agencies[node.parent]
        for a in self.agencies.values():
            for alias in a.aliases:
                other = self._alias.get(alias)
                if (other and other != a.name) or (alias in self.agencies and alias != a.name):
                    raise ConfigError(f"{source}: alias {alias!r} of {a.name!r} also names {other or alias!r}")
                self._alias[alias] = a.name
        for d in self.bangkok_districts:
            if not self.local(DISTRICT_OFFICE, d):
                raise ConfigError(f"{source}: district {d!r} has no district office "
                                  f"(an agency of kind {DISTRICT_OFFICE!r} with {d!r} in its districts)")

    @property
    def names(self) -> set[str]:
        return set(self.agencies)

    def canonical(self, name: str) -> str | None:
        """The directory name for a name or alias (``เขตบางนา`` -> ``สำนักงานเขตบางนา``), else None."""
        name = name.strip()
        if name in self.agencies:
            return name
        return self._alias.get(name)

    def kind_of(self, name: str) -> str | None:
        canon = self.canonical(name)
        return self.agencies[canon].kind if canon else None

    def local(self, kind: str, district: str | None) -> list[str]:
        """Agencies of ``kind`` serving ``district``: the main ones first, then those serving part of it."""
        if not district:
            return []
        # asked for every kind of every complaint: remembered per (kind, district), the directory never changes
        memo: dict[tuple[str, str], tuple[str, ...]] = self.__dict__.setdefault("_local_memo", {})
        found = memo.get((kind, district))
        if found is None:
            main = [a.name for a in self.agencies.values() if a.kind == kind and district in a.districts]
            part = [a.name for a in self.agencies.values() if a.kind == kind and district in a.also]
            if len(memo) > 20_000:  # districts come from requests: bound what unknown ones can fill
                memo.clear()
            found = memo[(kind, district)] = tuple(main + [p for p in part if p not in main])
        return list(found)

    def escalation(self, name: str) -> list[str]:
        """The chain of parents above an agency, nearest first."""
        chain, node = [], self.agencies[name]
        while node.parent is not None:
            chain.append(node.parent)
            node = self.agencies[node.parent]
        return chain

    def in_bangkok(self, district: str | None) -> bool:
        return bool(district) and district in self.bangkok_districts


@dataclass(frozen=True)
class Rule:
    """Give a complaint a kind (or a named agency) when its topics and/or its text match."""

    index: int
    target: str  # a kind, or an agency name when ``is_agency``
    is_agency: bool
    score: float
    topics: frozenset[str]
    pattern: re.Pattern[str] | None
    unless: re.Pattern[str] | None
    note: str
    _find: Prefiltered | None = field(default=None, init=False, repr=False, compare=False)
    _unless: Prefiltered | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # the patterns, skipping texts that lack every word a match needs
        object.__setattr__(self, "_find", Prefiltered(self.pattern, scan=NORMALISED) if self.pattern is not None else None)
        object.__setattr__(self, "_unless", Prefiltered(self.unless, scan=NORMALISED) if self.unless is not None else None)

    def match(self, norm: str, topics: list[str]) -> str | None:
        """What matched (for the explanation), or None."""
        if self.topics and self.topics.isdisjoint(topics):
            return None
        hit = None
        if self._find is not None:
            m = self._find.search(norm)
            if m is None:
                return None
            hit = m.group(0)
        if self._unless is not None and self._unless.search(norm):
            return None
        parts = ([f"topic {'/'.join(sorted(self.topics.intersection(topics)))}"] if self.topics else []) + \
                ([f"phrase '{hit}'"] if hit else [])
        return " + ".join(parts)


@dataclass(frozen=True)
class KindSpec:
    """How a kind resolves to an agency: one fixed agency, or the district's local one."""

    name: str
    agency: str | None
    local: bool
    fallback: str | None


@dataclass
class RoutingTable:
    """Kinds and rules from ``routing.toml``, validated against a directory."""

    kinds: dict[str, KindSpec]
    rules: list[Rule]
    default_score: float = 0.5
    outside_bangkok: str = "damrongdhamma"
    no_district: str = "ศูนย์ดำรงธรรมกรุงเทพมหานคร"
    override: float = 0.6
    veto: float = 0.9
    agreement_bonus: float = 0.15
    review_margin: float = 0.5
    topic_min_score: float = 0.5
    secondary: float = 0.4
    review_below: float = 0.45
    min_words: int = 3
    max_agencies: int = 3
    review_from: float = 0.3
    max_candidates: int = 5

    @classmethod
    def from_dict(cls, raw: dict[str, Any], directory: Directory, source: str = "routing table") -> RoutingTable:
        kinds: dict[str, KindSpec] = {}
        for name, spec in (raw.get("kinds") or {}).items():
            if not isinstance(spec, dict):
                raise ConfigError(f"{source}: [kinds.{name}] must be a table")
            ks = KindSpec(name, spec.get("agency"), bool(spec.get("local", False)), spec.get("fallback"))
            for key in ("agency", "fallback"):
                value = getattr(ks, key)
                if value is not None and value not in directory.agencies:
                    raise ConfigError(f"{source}: kind {name!r}: {key} {value!r} is not in the directory")
            if ks.local and not any(a.kind == name and a.districts for a in directory.agencies.values()):
                raise ConfigError(f"{source}: kind {name!r} is local but no agency of that kind lists districts")
            kinds[name] = ks
        if DISTRICT_OFFICE not in kinds:
            raise ConfigError(f"{source}: [kinds.{DISTRICT_OFFICE}] is required (the default handler)")
        for a in directory.agencies.values():
            if a.kind not in kinds:
                raise ConfigError(f"{source}: agency {a.name!r} has kind {a.kind!r}, which is not one of: "
                                  f"{', '.join(sorted(kinds))}")
        rules = [cls._rule(i, r, kinds, directory, source) for i, r in enumerate(raw.get("rules") or [], 1)]
        settings = raw.get("settings") or {}
        known = {"default_score", "outside_bangkok", "no_district", "override", "veto", "agreement_bonus", "review_margin", "topic_min_score", "secondary", "review_below",
                 "min_words", "max_agencies", "review_from", "max_candidates"}
        unknown = set(settings) - known
        if unknown:
            raise ConfigError(f"{source}: [settings] has unknown keys {sorted(unknown)}; known: {', '.join(sorted(known))}")
        table = cls(kinds, rules, **settings)
        if table.outside_bangkok not in kinds:
            raise ConfigError(f"{source}: outside_bangkok {table.outside_bangkok!r} is not one of the kinds")
        if table.no_district not in directory.agencies:
            raise ConfigError(f"{source}: no_district {table.no_district!r} is not in the directory")
        return table

    @staticmethod
    def _rule(i: int, r: dict[str, Any], kinds: dict[str, KindSpec], directory: Directory, source: str) -> Rule:
        where = f"{source}: rule {i}"
        if ("kind" in r) == ("agency" in r):
            raise ConfigError(f"{where} needs exactly one of 'kind' or 'agency', got {sorted(r)}")
        if "kind" in r and r["kind"] not in kinds:
            raise ConfigError(f"{where}: kind {r['kind']!r} is not one of: {', '.join(sorted(kinds))}")
        if "agency" in r and r["agency"] not in directory.agencies:
            raise ConfigError(f"{where}: agency {r['agency']!r} is not in the directory")
        topics, phrases, unless = r.get("topics") or [], r.get("phrases") or [], r.get("unless") or []
        if not topics and not phrases:
            raise ConfigError(f"{where} needs 'topics' or 'phrases'")
        score = r.get("score", 0.7)
        if not isinstance(score, (int, float)) or not 0 <= score <= 1:
            raise ConfigError(f"{where}: score {score!r} is not a number between 0 and 1")

        def compile_(pats: list[str]) -> re.Pattern[str] | None:
            if not pats:
                return None
            try:
                return re.compile("|".join(f"(?:{p})" for p in pats))
            except re.error as exc:
                raise ConfigError(f"{where}: bad phrase pattern {pats!r}: {exc}") from exc

        return Rule(i, r.get("kind") or r["agency"], "agency" in r, float(score), frozenset(topics), compile_(phrases),
                    compile_(unless), str(r.get("note", "")))

    @classmethod
    def load(cls, directory: Directory, path: Path | None = None) -> RoutingTable:
        path = path or TABLE_PATH
        return cls.from_dict(_read_toml(path, "routing table"), directory, str(path))


@dataclass
class Router:
    """Routes a triaged complaint to agencies through the directory, the table and a learned model."""

    directory: Directory
    table: RoutingTable
    places: Places | None = None

    @classmethod
    def load(cls, directory_path: Path | None = None, table_path: Path | None = None,
             places_path: Path | None = None) -> Router:
        """Load and validate the directory, the routing table and the place list (the shipped ones by default)."""
        directory = Directory.load(directory_path)
        return cls(directory, RoutingTable.load(directory, table_path), Places.load(directory.bangkok_districts, places_path))

    def district_for(self, district: str | None, norm: str) -> tuple[str | None, str | None]:
        """(district, where it came from): the intake's when given, else the one the text names."""
        if isinstance(district, str) and district.strip():
            return district.strip(), "intake"
        found = self.places.district_in(norm) if self.places is not None else None
        return (found, "text") if found else (None, None)

    def rule_evidence(self, table: dict[str, tuple[float, str]]) -> dict[str, tuple[float, float]]:
        """Per kind other than the district office: (a strong rule names it, only a weak rule does), as 0/1."""
        out: dict[str, tuple[float, float]] = {}
        for key, (score, _why) in table.items():
            kind = self.key_kind(key)
            if kind == DISTRICT_OFFICE:
                continue
            strong, weak = out.get(kind, (0.0, 0.0))
            if score > self.table.default_score:
                strong = 1.0
            else:
                weak = 1.0
            out[kind] = (strong, weak)
        return out

    def move_scores(self, learned: Any, kind_p: dict[str, float], table: dict[str, tuple[float, str]],
                    district: str | None, evidence: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
        """Calibrated probability, per kind other than the district office, that the complaint is that kind's.

        ``learned.calibration_`` = (a, b, c, d): sigmoid(a * logit(p) + b * strong rule + c * weak rule + d),
        fitted at training on validation forwards and ordinary tickets mixed at the real forward rate.
        ``evidence``: ``rule_evidence(table)`` when the caller has it.
        """
        a, b, c, d = learned.calibration_
        if evidence is None:
            evidence = self.rule_evidence(table)
        out: dict[str, float] = {}
        resolved, log, exp = self._by_district(district), math.log, math.exp
        p_of, evidence_of, is_resolved = kind_p.get, evidence.get, resolved.get
        for kind in set(kind_p) | set(evidence):
            if kind == DISTRICT_OFFICE or not is_resolved(kind):
                continue
            # min(max(p, 1e-6), 1 - 1e-6) and max(min(z, 30.0), -30.0), the same values without the calls
            p = p_of(kind, 0.0)
            if p < 1e-6:
                p = 1e-6
            elif p > _ALMOST_ONE:
                p = _ALMOST_ONE
            strong, weak = evidence_of(kind, _NO_EVIDENCE)
            z = a * log(p / (1 - p)) + b * strong + c * weak + d
            if z > 30.0:
                z = 30.0
            elif z < -30.0:
                z = -30.0
            out[kind] = 1.0 / (1.0 + exp(-z))
        return out

    @property
    def agency_names(self) -> set[str]:
        return self.directory.names

    def resolve(self, kind: str, district: str | None) -> list[str]:
        """Concrete agencies for a kind in a district, best first (never empty for a routable kind)."""
        return list(self._resolved(kind, district))

    def _resolved(self, kind: str, district: str | None) -> tuple[str, ...]:
        return self._by_district(district)[kind]

    def _by_district(self, district: str | None) -> dict[str, tuple[str, ...]]:
        """``resolve`` of every kind in a district, remembered per district while the table and the directory
        are the same objects (a complaint asks it for every kind, several times)."""
        memo: tuple[Any, Any, dict[str | None, dict[str, tuple[str, ...]]]] | None = self.__dict__.get("_resolve_memo")
        if memo is None or memo[0] is not self.table or memo[1] is not self.directory or len(memo[2]) > 2_000:
            memo = self.__dict__["_resolve_memo"] = (self.table, self.directory, {})
        found = memo[2].get(district)
        if found is None:
            found = memo[2][district] = {kind: tuple(self._resolve(kind, district)) for kind in self.table.kinds}
        return found

    def _resolve(self, kind: str, district: str | None) -> list[str]:
        spec = self.table.kinds[kind]
        if spec.agency:
            return [spec.agency]
        if not spec.local:
            return []
        found = self.directory.local(kind, district)
        if not found and district and not self.directory.in_bangkok(district):
            found = self.directory.local(self.table.outside_bangkok, district)
        if not found and not district:
            found = [self.table.no_district] if kind == DISTRICT_OFFICE else []
        if not found and spec.fallback:
            found = [spec.fallback]
        if not found and kind == DISTRICT_OFFICE:
            found = [self.table.no_district]
        return found

    def table_kinds(self, norm: str, topics: list[str]) -> dict[str, tuple[float, str]]:
        """Score per kind (or named agency) from the rules, with what matched; the district office by default."""
        out: dict[str, tuple[float, str]] = {DISTRICT_OFFICE: (self.table.default_score, _DEFAULT)}
        for rule in self.table.rules:
            why = rule.match(norm, topics)
            if why is None:
                continue
            key = f"@{rule.target}" if rule.is_agency else rule.target
            if rule.score > out.get(key, (-1.0, ""))[0]:
                out[key] = (rule.score, f"rule {rule.index}: {why}" + (f" ({rule.note})" if rule.note else ""))
        return out

    def rule_topics(self, prediction: dict[str, Any]) -> list[str]:
        """The predicted topics that topic rules may use: decided, and at least ``topic_min_score`` likely."""
        scores = prediction.get("topic_scores") or {}
        return [x for x in prediction.get("topics", []) if scores.get(x, 1.0) >= self.table.topic_min_score]

    def usable(self, kind_p: dict[str, float], district: str | None) -> dict[str, float]:
        """The learned model's kinds that the table knows and can resolve in this district."""
        resolved = self._by_district(district)
        return {k: p for k, p in kind_p.items() if resolved.get(k)}

    def key_kind(self, key: str) -> str:
        """The kind of a table key: a kind, or ``@<agency>`` for a rule that names an agency."""
        return self.directory.agencies[key[1:]].kind if key.startswith("@") else key

    def thresholds(self, learned: Any) -> tuple[float, float, float]:
        """(override, veto, agreement bonus): tuned at training when the learned model carries them, else the table's."""
        t = self.table
        o, v, b = (getattr(learned, name, None) for name in ("override_", "veto_", "bonus_"))
        return (float(o) if o is not None else t.override, float(v) if v is not None else t.veto,
                float(b) if b is not None else t.agreement_bonus)

    def decide(self, table: dict[str, tuple[float, str]], learned_p: dict[str, float],
               override: float, veto: float, bonus: float | None = None
               ) -> tuple[list[tuple[str, tuple[float, str]]], list[str], str]:
        """Order the table's keys, letting the learned model lead only where it is confident.

        The model's support for a kind other than the district office is its probability, plus
        ``agreement_bonus`` when a rule names that kind too; the best such kind leads when its
        support reaches ``override``. A rule that sends a complaint away from the district office
        is undone only when the model gives the district office at least ``veto``. Returns the
        table ranking, the final order and what decided.
        """
        t = self.table
        ranked = sorted(table.items(), key=lambda kv: -kv[1][0])
        order = [k for k, _ in ranked]
        if not learned_p:
            return ranked, order, "table"
        keys_by_kind = {self.key_kind(k): k for k in reversed(order)}
        bonus = t.agreement_bonus if bonus is None else bonus
        support = {keys_by_kind.get(k, k): p + (bonus if k in keys_by_kind else 0.0)
                   for k, p in learned_p.items() if k != DISTRICT_OFFICE}
        top = max(support.items(), key=lambda kv: kv[1]) if support else None
        if top is not None and top[1] >= override:
            lead = top[0]
            why = ("table, confirmed by the learned model" if lead == order[0] else
                   f"learned model overrode the table: {self.key_kind(lead)} {top[1]:.2f} >= {override:.2f}")
        elif order[0] != DISTRICT_OFFICE and learned_p.get(DISTRICT_OFFICE, 0.0) >= veto:
            lead = DISTRICT_OFFICE
            why = f"learned model kept it at the district office: {learned_p[DISTRICT_OFFICE]:.2f} >= {veto:.2f}"
        else:
            lead = order[0]
            why = "table"
            # a close call on the model's own probability (not the bonus a rule adds): listed second, reviewed
            if top is not None and top[0] != lead and learned_p.get(self.key_kind(top[0]), 0.0) >= override * (1 - t.review_margin):
                order = [lead, top[0]] + [o for o in order if o not in (lead, top[0])]
                why = f"table; the learned model's second opinion: {self.key_kind(top[0])}"
        return ranked, [lead] + [o for o in order if o != lead], why

    def route(self, text: str, norm: str, district: str | None, prediction: dict[str, Any],
              learned: KindModel | None = None) -> dict[str, Any]:
        """Agencies for one complaint, primary first, with scores, review flag, candidates and explanation.

        ``prediction`` is the record from ``TriageModel.predict`` (topics, topic_scores);
        ``learned`` the model's agency model or None (then the table decides alone). With a
        calibrated model the primary leaves the district office only at or above its break-even
        threshold; ``agency_candidates`` ranks every other agency the router believes in.
        """
        t = self.table
        district, district_source = self.district_for(district, norm)
        table = self.table_kinds(norm, self.rule_topics(prediction))
        learned_p = self.usable(learned.kind_proba(norm), district) if learned is not None else {}
        calibrated = learned is not None and getattr(learned, "calibration_", None) is not None
        move: dict[str, float] = {}
        if calibrated:
            evidence = self.rule_evidence(table)
            move = self.move_scores(learned, learned_p, table, district, evidence)
            ranked = sorted(table.items(), key=lambda kv: -kv[1][0])
            order, decision, score_of = self._calibrated_order(table, learned_p, move, getattr(learned, "move_threshold_", 0.5))
            rank_p = learned.rank_proba(norm) if learned is not None and getattr(learned, "ranker_", None) is not None else None  # type: ignore[attr-defined]
            candidate_score = self.candidate_scores(score_of, table, rank_p, evidence)
        else:
            ranked, order, decision = self.decide(table, learned_p, *self.thresholds(learned))
            score_of = {k: max(table.get(k, (0.0, ""))[0], learned_p.get(self.key_kind(k), 0.0)) for k in order}

        names_for: Callable[[str], Sequence[str]]
        if any(k.startswith("@") for k in table):
            names_for = lambda key: self._names(key, table, district)  # noqa: E731
        else:  # no rule named an agency (most complaints): ``_names`` is the kind resolved in the district
            names_for = self._by_district(district).__getitem__
        agencies: list[str] = []
        scores: dict[str, float] = {}
        kinds_out: list[str] = []
        for rank, key in enumerate(order):
            score = score_of[key]
            if rank > 0 and not calibrated and score < t.secondary and not (rank == 1 and "second opinion" in decision):
                continue
            if rank > 0 and calibrated and score < t.secondary and table.get(key, (0.0, ""))[0] <= t.default_score:
                continue  # further agencies: likely enough, or named by a strong rule
            if rank > 0 and key == DISTRICT_OFFICE and table[key][1] == _DEFAULT and learned_p.get(key, 0.0) < t.secondary:
                continue  # the default handler is only listed when it is the primary or something names it
            names = names_for(key)
            if not names or names[0] in agencies:
                continue
            agencies.append(names[0])
            scores[names[0]] = round(score, 4)
            kinds_out.append(self.key_kind(key))  # the kind decided (a district office without district resolves to a centre)
            if len(agencies) >= t.max_agencies:
                break

        reasons = []
        if district is None and not calibrated:
            reasons.append("no district given")
        elif district is not None and not self.directory.in_bangkok(district) and not self.directory.local(t.outside_bangkok, district):
            reasons.append(f"district {district!r} is not in the directory")
        # the words with a letter, counted up to what the two tests below can tell apart (exact below that)
        n_words, enough = 0, max(t.min_words, 2 * t.min_words)
        for word in tokenize(norm) if norm else ():
            if _has_letter(word):
                n_words += 1
                if n_words >= enough:
                    break
        if n_words < t.min_words:
            reasons.append(f"vague: {n_words} word(s)")
        top_topic = max(prediction.get("topic_scores", {}).values(), default=None)
        if top_topic is not None and top_topic < t.review_below and n_words < 2 * t.min_words:
            reasons.append(f"vague: no topic is likely (best {top_topic:.2f})")
        if "second opinion" in decision or "close call" in decision:
            reasons.append(f"the kind is uncertain ({decision})" if calibrated else f"table and learned model disagree ({decision})")
        needs_review = bool(reasons)

        candidates: list[dict[str, Any]] = []
        if calibrated or needs_review:
            pool = sorted((candidate_score if calibrated else score_of).items(), key=_BY_SCORE, reverse=True)
            names_of: dict[str, Sequence[str]] = {}
            listed: set[str] = set()
            for per_kind in (1, 2):  # one agency per kind first, then the next station or branch of each
                for key, score in pool:
                    if 0 <= t.max_candidates <= len(candidates):  # the rest would be cut off below
                        break
                    if key not in names_of:
                        names_of[key] = names_for(key)
                    for name in names_of[key][per_kind - 1:per_kind]:
                        if (not calibrated or name not in agencies) and name not in listed:
                            candidates.append({"agency": name, "score": round(score, 4)})
                            listed.add(name)
            candidates = candidates[:t.max_candidates]
        explanation: dict[str, Any] = {
            "table": [{"kind": self.key_kind(k), "agency": k[1:] if k.startswith("@") else None, "score": round(s, 4),
                       "why": why} for k, (s, why) in ranked],
            "learned": {k: round(p, 4) for k, p in sorted(learned_p.items(), key=_BY_SCORE, reverse=True)[:3]} if learned else None,
            "decision": decision,
            "review_reasons": reasons,
            "district": district,
            "district_source": district_source,
        }
        if calibrated:
            explanation["move"] = {"calibrated": {k: round(v, 4) for k, v in sorted(move.items(), key=_BY_SCORE, reverse=True)[:3]},
                                   "threshold": getattr(learned, "move_threshold_", 0.5)}
        if district is None:
            explanation["district_note"] = "no district given or named in the text: the kind's city-wide agency"
        return {"agencies": agencies, "agency_scores": scores, "agency_kinds": kinds_out,
                "agency_needs_review": needs_review, "agency_candidates": candidates, "agency_explanation": explanation}

    def _names(self, key: str, table: dict[str, tuple[float, str]], district: str | None) -> list[str]:
        """Concrete agencies for an order key: the agency a rule named, else the kind resolved in the district."""
        if key.startswith("@"):
            return [key[1:]]
        if len(table) == 1:  # the district office alone (the default): no rule named an agency
            return list(self._resolved(key, district))
        named = [k[1:] for k in table if k.startswith("@") and self.key_kind(k) == key]
        return named + [n for n in self._resolved(key, district) if n not in named]

    def candidate_scores(self, score_of: dict[str, float], table: dict[str, tuple[float, str]],
                         rank_p: dict[str, float] | None,
                         evidence: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
        """Scores that rank the reviewer's suggestions: for kinds other than the district office, the
        ranker's probability of the kind among forwarded complaints (0.7) plus a strong rule naming
        it (0.3), or its calibrated probability when that is higher; without a ranker, the calibrated
        probabilities. The district office keeps its score."""
        if rank_p is None:
            return dict(score_of)
        if evidence is None:
            evidence = self.rule_evidence(table)
        rank_of, evidence_of = rank_p.get, evidence.get
        return {k: (v if k == DISTRICT_OFFICE else max(v, 0.7 * rank_of(k, 0.0) + 0.3 * evidence_of(k, _NO_EVIDENCE)[0]))
                for k, v in score_of.items()}

    def _calibrated_order(self, table: dict[str, tuple[float, str]], learned_p: dict[str, float],
                          move: dict[str, float], threshold: float) -> tuple[list[str], str, dict[str, float]]:
        """Kinds in order (primary first), what decided, and each kind's score, for a calibrated model.

        The primary leaves the district office only when another kind's calibrated probability
        reaches ``threshold``; a kind within ``review_from`` of it is a close call (reviewed).
        """
        best = max(move.items(), key=_BY_SCORE) if move else None
        score_of = dict(move)
        score_of[DISTRICT_OFFICE] = max(learned_p.get(DISTRICT_OFFICE, 0.0), 1.0 - (best[1] if best else 0.0))
        if best is not None and best[1] >= threshold:
            lead = best[0]
            why = f"moved to {lead}: calibrated {best[1]:.2f} >= {threshold:.2f}"
        else:
            lead = DISTRICT_OFFICE
            if best is not None and best[1] >= self.table.review_from:
                why = f"close call: {best[0]} {best[1]:.2f} < {threshold:.2f}, kept at the district office"
            else:
                why = "kept at the district office" + (f": best other kind {best[0]} {best[1]:.2f}" if best else "")
        rest = sorted((k for k in score_of if k != lead), key=score_of.__getitem__, reverse=True)
        return [lead] + rest, why, score_of
