"""Pure planners: (spec, observed children, now) -> plan.

Nothing here performs I/O; handlers feed in what adapters observed and apply the
plan. That keeps every decision unit-testable and every restart harmless: the same
observations always give the same plan.
"""
