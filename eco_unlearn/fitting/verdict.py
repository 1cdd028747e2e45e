"""The fit's verdict, end to end: a guard meets its target only if the objective, measured with the
classifier in front, meets it, and if the held-out error rates rest on enough prompts to mean something.
Each failure comes with what to do about it."""

from __future__ import annotations

from .report import HeldOutRates, ObjectiveValues

__all__ = ["MIN_HELD_OUT_NEGATIVES", "MIN_HELD_OUT_POSITIVES", "MIN_OBJECTIVE_ITEMS", "verdict"]

MIN_HELD_OUT_POSITIVES = 20
"""Below this many held-out forget prompts, one miss moves the FNR by more than 5 points."""
MIN_HELD_OUT_NEGATIVES = 100
"""Below this many held-out negatives, a 1% false-positive rate cannot be told from zero."""

MIN_OBJECTIVE_ITEMS = 20
"""Below this many items scored by the objective (with ``answer_recall``: those the unguarded model
answers), one item moves the objective by more than 5 points, so a 5% target cannot be told apart."""

ADVICE = ("give more forget examples, derive them from a name and a text (eco-unlearn fit --about NAME --passage FILE), "
          "or name the scope's entities (--entities)")


def verdict(search_met: bool, objective: ObjectiveValues, held_out: HeldOutRates) -> tuple[bool, list[str]]:
    """Whether the guard meets its target, and the plain reasons when it does not."""
    reasons = []
    if search_met and not objective.met_end_to_end:
        sign = "<=" if objective.goal == "min" else ">="
        reasons.append(
            f"target NOT met end to end: {objective.name} is {objective.after_end_to_end:.3g} with the classifier in "
            f"front (target {sign} {objective.target:.3g}; {objective.items_flagged_end_to_end} of {objective.items} "
            f"items flagged), although corrupting every prompt reaches {objective.after:.3g}: the classifier misses "
            f"forget prompts; {ADVICE}"
        )
    if objective.items < MIN_OBJECTIVE_ITEMS:
        reasons.append(
            f"the strength rests on {objective.items} forget items scored by {objective.name} (fewer than "
            f"{MIN_OBJECTIVE_ITEMS}; one item moves it by {1 / max(objective.items, 1):.0%}): give more items with "
            "answers, or longer passages whose facts the model knows"
        )
    if held_out.positives < MIN_HELD_OUT_POSITIVES:
        reasons.append(
            f"the held-out FNR ({held_out.false_negatives} of {held_out.positives}) rests on fewer than "
            f"{MIN_HELD_OUT_POSITIVES} held-out forget prompts and says little; {ADVICE}"
        )
    if held_out.negatives < MIN_HELD_OUT_NEGATIVES:
        reasons.append(
            f"the held-out FPR ({held_out.false_positives} of {held_out.negatives}) rests on fewer than "
            f"{MIN_HELD_OUT_NEGATIVES} held-out negatives; add retain or general prompts"
        )
    return search_met and not reasons, reasons
