"""triage: reads Thai citizens' complaints and decides topic, urgency and the agency that must act."""

__version__ = "0.1.0"
