"""Progressive rollout: plans, always-valid sequential tests and the controller state machine."""

from tether.monitor.sequential import Comparison, Decision, compare_rates, confidence_sequence
from tether.rollout.controller import Controller
from tether.rollout.plan import Guardrails, Plan, load_plan
from tether.rollout.record import Event, Rollout

__all__ = [
    "Comparison",
    "Controller",
    "Decision",
    "Event",
    "Guardrails",
    "Plan",
    "Rollout",
    "compare_rates",
    "confidence_sequence",
    "load_plan",
]
