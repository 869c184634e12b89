"""Pre-merge review: budgets and the ``check`` gate, unit parsing, ``[tool.convaudit]`` settings, diffs."""
