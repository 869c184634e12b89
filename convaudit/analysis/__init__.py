"""Analysis: trace the model, propagate shapes, cost every op, list every conv, assemble an Analysis.

tracing → propagation → rules (shape and cost formulas) → inventory (conv kinds, reasons) →
totals → [separability] [graph] [crosscheck] → engine.analyze() → documents.Analysis
"""

from convaudit.analysis.engine import analyze

__all__ = ["analyze"]
