"""Plain-text explanations of scenario results, for the ``ringfence eval`` table."""

from __future__ import annotations

from ringfence.eval.runner import ScenarioResult, StepResult, Verdict

__all__ = ["explain", "step_label"]


def step_label(step: StepResult) -> str:
    """``#3 send_email: approval (email.after-injection)``."""
    rules = ", ".join(step.rules) or "-"
    return f"#{step.index + 1} {step.tool}: {step.verdict.value} ({rules})"


def explain(result: ScenarioResult) -> str:
    """What happened, in one line: the first step that did not run, or the harm that did."""
    blocked = [s for s in result.steps if not s.ran]
    if result.scenario.attacked:
        first = result.scenario.first_harmful
        if result.stopped:
            stop = blocked[0]
            where = "at" if stop.index == first else "before"
            text = f"stopped {where} the harm: {step_label(stop)}"
        else:
            harmful = result.steps[first] if first is not None else None
            text = "NOT stopped: " + (
                f"#{harmful.index + 1} {harmful.tool} ran" if harmful is not None else "no harm"
            )
            if blocked:
                text += f"; later {step_label(blocked[0])}"
        if result.harm_done and result.stopped:
            text += f"; {result.harm_done} later harmful call(s) ran"
        return text
    if not blocked:
        return "all steps allowed"
    parts = [step_label(s) for s in blocked]
    kinds = {s.verdict for s in blocked}
    head = "denied" if Verdict.DENY in kinds else "needs approval"
    return f"{head}: " + "; ".join(parts)
