"""The evaluation gate: no candidate takes traffic until it is proven no worse than the champion."""

from tether.gate.delong import AucComparison, delong
from tether.gate.evaluate import Outputs, evaluate
from tether.gate.mcnemar import McNemar, mcnemar
from tether.gate.multiplicity import holm
from tether.gate.reports import GateReport, get_report, list_reports, report_html
from tether.gate.results import TestResult, Verdict, decide
from tether.gate.run import pinned, policy_spec, run_gate, set_policy
from tether.gate.spec import GateSpec, load_spec

__all__ = [
    "AucComparison",
    "GateReport",
    "GateSpec",
    "McNemar",
    "Outputs",
    "TestResult",
    "Verdict",
    "decide",
    "delong",
    "evaluate",
    "get_report",
    "holm",
    "list_reports",
    "load_spec",
    "mcnemar",
    "pinned",
    "policy_spec",
    "report_html",
    "run_gate",
    "set_policy",
]
