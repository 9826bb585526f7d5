"""cortexedge.sweep: grids of recordings x decoders x recipes x seeds, run as Ray tasks.

`run(plan, out)` trains each (recording, decoder, seed) once, compresses and exports every
recipe from it, and streams results to `out/results.jsonl`; `report(out)` re-reads them into a
table and `pareto.png`. Ray is imported only when a sweep runs.
"""

from cortexedge.sweep.plan import Plan, PlanError, load_plan
from cortexedge.sweep.report import report
from cortexedge.sweep.runner import run

__all__ = ["Plan", "PlanError", "load_plan", "report", "run"]
