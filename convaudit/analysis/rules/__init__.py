"""Shape and cost formulas: pure functions of shapes, looked up in registries keyed by type, function or op."""

from convaudit.analysis.rules.costs import MAC_RULES, OpCall
from convaudit.analysis.rules.shapes import SHAPE_RULES

__all__ = ["MAC_RULES", "SHAPE_RULES", "OpCall"]
