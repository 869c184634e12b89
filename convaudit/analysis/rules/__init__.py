"""Shape and cost formulas: pure functions of shapes, looked up in registries keyed by type, function or op.

registry (one way in, MRO lookup) · formulas (conv, separable, linear, matmul, attention) · costs (per-op MAC rules) ·
aten (aten-level MAC rules of the fallback capture) · shapes (per-op shape rules) · direct (calls that run
as they are: on no tensor, or as views of meta tensors)
"""

# Importing any module of this package runs this file first: every rule, the aten-level ones
# included, is registered before a lookup can happen.
from convaudit.analysis.rules import aten as aten
from convaudit.analysis.rules.costs import MAC_RULES, OpCall, register_mac_rule
from convaudit.analysis.rules.shapes import SHAPE_RULES

__all__ = ["MAC_RULES", "SHAPE_RULES", "OpCall", "register_mac_rule"]
