"""Agency routing: which agency must handle a complaint.

Interim version: a topic-to-agency table (``resources/topic_agencies.toml``) resolved through the
district, with the district office as the default handler. The full router (agency directory,
routing table by topic and phrase, learned model) replaces it behind the same ``Router.route``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.errors import ConfigError

TABLE_PATH = Path(__file__).with_name("resources") / "topic_agencies.toml"


@dataclass
class Router:
    """Maps a prediction (topics, district) to agencies, primary first."""

    table: dict[str, list[str]] = field(default_factory=dict)
    default: str = "สำนักงานเขต{district}"
    unknown_district: str = "ศูนย์ดำรงธรรมกรุงเทพมหานคร"

    @classmethod
    def load(cls, path: Path | None = None) -> Router:
        path = path or TABLE_PATH
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read routing table {path}: {exc}") from exc
        table = data.get("topics", {})
        if not isinstance(table, dict) or not all(isinstance(v, list) for v in table.values()):
            raise ConfigError(f"{path}: [topics] must map a topic to a list of agency names")
        return cls(table=table, default=data.get("default", cls.default))

    def _resolve(self, name: str, district: str | None) -> str:
        if "{district}" in name:
            return name.format(district=district) if district else self.unknown_district
        return name

    def route(self, text: str, norm: str, district: str | None, prediction: dict[str, Any],
              learned: Any = None) -> dict[str, Any]:
        agencies: list[str] = []
        scores: dict[str, float] = {}
        for topic in prediction.get("topics", []):
            for name in self.table.get(topic, [self.default]):
                agency = self._resolve(name, district)
                if agency not in agencies:
                    agencies.append(agency)
                    scores[agency] = float(prediction.get("topic_scores", {}).get(topic, 0.0))
        if not agencies:
            agency = self._resolve(self.default, district)
            agencies, scores = [agency], {agency: 0.0}
        return {"agencies": agencies, "agency_scores": scores, "agency_needs_review": district is None}
