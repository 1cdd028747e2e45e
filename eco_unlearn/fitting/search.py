"""Strength search: find the corruption strength that meets an objective, with forward passes only.

Five methods over log-strength, each keeping the full trace of (strength, value):

* ``bisection``: for objectives that improve monotonically with strength. It brackets the smallest
  strength that meets the target and halves the bracket geometrically: the least corruption that
  forgets, in a handful of evaluations.
* ``zeroth_order``: the paper's learned corruption. Central finite differences estimate the slope of
  the objective in log-strength; a projected, decaying step follows it; it stops at the target or when
  the budget of evaluations is spent. It needs no monotonicity (``match_reference``).
* ``scan``: for rugged objectives over a wide range (``match_reference``'s KS p-value on a few dozen
  items moves in coarse, noisy steps). A coarse log-spaced scan from the weakest strength up stops at the
  first that meets the target and bisects between it and the scan point below; when none meets, it
  refines around the best point. Unlike descent from the middle of the range, it cannot walk away from a
  region it never looked at, and its cost is bounded by the scan.
* ``bracket``: ``scan``'s grid searched by bisection over its points first (about log2 of the points to
  bracket the lowest that meets, where a scan evaluates every point up to it), then the same bisection;
  for objectives that miss the target at weak strengths and meet it above some strength (over a window
  at least as wide as the grid's spacing). When none of its probes meets, it tries the points next to the
  best probe, then falls back to the scan.
* ``grid``: evenly spaced in log-strength, for plots and sanity checks.

Every method calls ``evaluate(strength) -> value`` and never evaluates one strength twice, but for one
case: an evaluation may stop early once the target is out of reach and return ``OutOfReach(bound)``, the
best value the full evaluation could have given. The point is recorded as missing the target with
``exact=False``; ``bisection``, ``bracket`` and ``scan`` decide on met or missed alone, and where they need
a value (the best point when nothing meets) the tracker asks for it in full, ``evaluate(strength,
exact=True)``, so their choices are those of full evaluations. An ``evaluate`` that returns
``OutOfReach`` must take that keyword; ``zeroth_order`` and ``grid`` ask for every value in full. All
share one keyword signature, ``(evaluate, *, low, high, goal, target, budget, integer, progress)`` plus
options of their own, and are registered by name in ``SEARCHES``: ``budget`` is the most evaluations
made (for ``grid``, the number of points), repeated ones included but for the final value of the kept
strength, which is made exact whatever is left of the budget.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ..errors import SearchError
from ..registry import Registry
from .. import validation
from .deprecated import KeyAccess

__all__ = [
    "DECIDING", "SEARCHES", "OutOfReach", "SearchError", "SearchPoint", "SearchResult", "bisection", "bracket", "grid", "scan",
    "zeroth_order",
]

Evaluate = Callable[[float], float]
# The searches that read only met or missed: their evaluations may stop early (the others need every value)
DECIDING = frozenset({"bisection", "bracket", "scan"})
Progress = Callable[[str, int, int], None]
Search = Callable[..., "SearchResult"]



class OutOfReach(float):
    """An evaluation that stopped once the target was out of reach: the float is the best value the full
    evaluation could have given (an upper bound for ``goal="max"``, a lower bound for ``"min"``)."""


@dataclass
class SearchPoint:
    """One evaluation: ``exact`` is False when it stopped early and ``value`` is only a bound."""

    strength: float
    value: float
    met: bool
    exact: bool = True


@dataclass
class SearchResult(KeyAccess):
    """The chosen strength, its exact value, whether it meets the target, and the trace of every strength
    evaluated (``repeated``: evaluations made again in full after stopping early)."""

    method: str
    strength: float
    value: float
    met: bool
    goal: str
    target: float
    trace: list[SearchPoint] = field(default_factory=list)
    message: str = ""
    repeated: int = 0

    @property
    def evaluations(self) -> int:
        return len(self.trace) + self.repeated

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["evaluations"] = self.evaluations
        return data


class _Tracker:
    """Evaluates strengths (rounded for integer corruptions), caches them and keeps the trace. For the
    searches in ``DECIDING`` evaluations that stop early stay bounds (see the module docstring); for the
    others a bound is evaluated again in full at once."""

    def __init__(self, evaluate: Evaluate, goal: str, target: float, budget: int, integer: bool, method: str,
                 progress: Progress | None):
        validation.one_of(goal, "goal", ("min", "max"), error=SearchError)
        validation.integer(budget, "the evaluation budget", minimum=2, what="an integer of at least 2", error=SearchError)
        self.evaluate, self.goal, self.target, self.budget = evaluate, goal, target, budget
        self.integer, self.method, self.progress = integer, method, progress
        self.decisions = method in DECIDING
        self.trace: list[SearchPoint] = []
        self.cache: dict[float, SearchPoint] = {}
        self.repeated = 0

    def met(self, value: float) -> bool:
        return value <= self.target if self.goal == "min" else value >= self.target

    @property
    def exhausted(self) -> bool:
        """Whether the budget is spent, counting as spent the full evaluations that choosing the best point
        may still need (bounds better than every exact value): a next point, should it be such a bound too,
        is then the one evaluation the final value may take beyond the budget."""
        return len(self.trace) + self.repeated + self._owed() >= self.budget

    def _owed(self) -> int:
        """Bounds that ``best`` would have to evaluate in full at worst: none once a point meets."""
        if any(p.met for p in self.trace):
            return 0
        sign = 1 if self.goal == "min" else -1
        exact = [sign * p.value for p in self.trace if p.exact]
        return sum(1 for p in self.trace if not p.exact and (not exact or sign * p.value < min(exact)))

    def __call__(self, strength: float) -> SearchPoint:
        if self.integer:
            strength = float(max(1, round(strength)))
        if strength in self.cache:
            return self.cache[strength]
        if self.progress:
            self.progress(f"{self.method}: strength {strength:.4g}", len(self.trace) + self.repeated, self.budget)
        point = self._point(strength, self.evaluate(strength))
        self.trace.append(point)
        self.cache[strength] = point
        self._report(point)
        if not point.exact and not self.decisions:
            point = self._in_full(point)
        return point

    def _point(self, strength: float, returned: float) -> SearchPoint:
        exact = not isinstance(returned, OutOfReach)
        return SearchPoint(strength, float(returned), exact and self.met(float(returned)), exact)

    def _report(self, point: SearchPoint) -> None:
        if self.progress:
            bound = f"{'>=' if self.goal == 'min' else '<='} " if not point.exact else ""
            shown = f"{bound}{point.value:.4g}" + (" (stopped early)" if bound else "")
            done = len(self.trace) + self.repeated
            self.progress(f"{self.method}: strength {point.strength:.4g} -> {shown}", done, self.budget)

    def _in_full(self, point: SearchPoint) -> SearchPoint:
        """``point``'s strength evaluated again in full; the trace holds the exact point in its place."""
        self.repeated += 1
        exact = self._point(point.strength, self.evaluate(point.strength, exact=True))
        if not exact.exact:
            raise SearchError("evaluate(strength, exact=True) must not stop early")
        self.trace[next(i for i, p in enumerate(self.trace) if p is point)] = exact
        self.cache[point.strength] = exact
        self._report(exact)
        return exact

    def best(self) -> SearchPoint:
        """The least strength that meets the target; else the best value (the least strength on ties),
        evaluating in full the bounds that could beat it."""
        met = [p for p in self.trace if p.met]
        if met:
            return min(met, key=lambda p: p.strength)
        sign = 1 if self.goal == "min" else -1
        while True:
            top = min(self.trace, key=lambda p: (sign * p.value, p.strength))
            if top.exact:
                return top
            self._in_full(top)  # a bound is at least as good as its value: it may hide the best point

    def result(self, message: str = "") -> SearchResult:
        best = self.best()
        if not best.met and not message:
            message = (
                f"the target ({'<=' if self.goal == 'min' else '>='} {self.target:.3g}) was not reached in "
                f"{len(self.trace) + self.repeated} evaluations; keeping the best strength found ({best.strength:.4g}, "
                f"value {best.value:.4g})"
            )
        return SearchResult(
            self.method, best.strength, best.value, best.met, self.goal, self.target, list(self.trace), message,
            self.repeated,
        )


def _check_range(low: float, high: float) -> None:
    if not (0 < low < high and math.isfinite(high)):
        raise SearchError(f"the strength range must satisfy 0 < low < high < inf, got [{low!r}, {high!r}]")


SEARCHES: Registry[Search] = Registry("search", error=SearchError, plural="searches")


@SEARCHES.register("bisection")
def bisection(
    evaluate: Evaluate, *, low: float, high: float, goal: str, target: float, budget: int = 30,
    integer: bool = False, rtol: float = 0.05, progress: Progress | None = None,
) -> SearchResult:
    """Geometric bisection for the least strength in [low, high] that meets the target.

    Assumes the objective improves with strength. If ``high`` does not meet the target, the target is
    unreachable in the range: the result says so and keeps the best strength seen.
    """
    _check_range(low, high)
    validation.number(rtol, "rtol", low=0, error=SearchError)
    track = _Tracker(evaluate, goal, target, budget, integer, "bisection", progress)
    if not track(high).met:
        return track.result(f"even the largest strength in the range ({high:.4g}) misses the target; widen the range or pick another corruption")
    if track(low).met:
        return track.result()
    lo, hi = low, high
    while not track.exhausted and hi / lo > 1 + rtol:
        mid = math.sqrt(lo * hi)
        if mid in (lo, hi) or (integer and round(mid) in (round(lo), round(hi))):
            break
        if track(mid).met:
            hi = mid
        else:
            lo = mid
    return track.result()


@SEARCHES.register("zeroth_order")
def zeroth_order(
    evaluate: Evaluate, *, low: float, high: float, goal: str, target: float, budget: int = 30,
    start: float | None = None, step: float = 1.0, delta: float = 0.25, integer: bool = False,
    progress: Progress | None = None,
) -> SearchResult:
    """Projected zeroth-order descent (ascent for ``goal="max"``) on log-strength.

    Each iteration estimates the slope by central differences ``(f(x+delta) - f(x-delta)) / (2 delta)``
    and moves ``x`` by ``step / sqrt(t)`` (natural-log units) against its sign, projected onto the range:
    a normalised step, since objectives differ in scale (a KS p-value moves by 0.01 where an accuracy
    moves by 0.3). On a flat stretch, where the difference is zero, ``delta`` doubles to look further.
    """
    _check_range(low, high)
    track = _Tracker(evaluate, goal, target, budget, integer, "zeroth_order", progress)
    lo, hi = math.log(low), math.log(high)
    x = math.log(start) if start else (lo + hi) / 2
    x = min(max(x, lo), hi)
    sign = 1.0 if goal == "min" else -1.0
    center = track(math.exp(x))
    t = 1
    while not center.met and len(track.trace) + 3 <= budget:
        evaluated = len(track.trace)
        up, down = track(math.exp(min(x + delta, hi))), track(math.exp(max(x - delta, lo)))
        width = min(x + delta, hi) - max(x - delta, lo)
        slope = (up.value - down.value) / width if width > 0 else 0.0
        if slope == 0.0:
            if delta >= (hi - lo):
                break
            delta *= 2
            continue
        move = -sign * math.copysign(step, slope) / math.sqrt(t)  # normalised: the objective's scale is arbitrary
        x = min(max(x + move, lo), hi)
        center, t = track(math.exp(x)), t + 1
        if any(p.met for p in (up, down)) or len(track.trace) == evaluated:
            break  # the target is met, or x is pinned where every strength is evaluated already
    return track.result()


def _log_grid(low: float, high: float, count: int) -> tuple[list[float], float]:
    """``count`` log-strengths evenly spaced from ``log(low)`` to ``log(high)``, and their spacing."""
    lo, hi = math.log(low), math.log(high)
    spacing = (hi - lo) / (count - 1)
    return [lo + i * spacing for i in range(count)], spacing


def _bisect_up(track: _Tracker, left: float, right: float, finest: float) -> None:
    """Bisect (in log-strength) between a strength that misses (``left``) and one that meets (``right``)."""
    while not track.exhausted and right - left > finest:
        mid = (left + right) / 2
        evaluated = len(track.trace)
        if track(math.exp(mid)).met:
            right = mid
        else:
            left = mid
        if len(track.trace) == evaluated:
            break  # rounded onto a strength evaluated already (integer corruptions)


def _scan_up(
    track: _Tracker, xs: list[float], spacing: float, finest: float, bounds: tuple[float, float]
) -> SearchResult:
    """``scan`` over the grid ``xs`` on ``track`` (points it evaluated already cost nothing); the refinement
    stays within ``bounds``, the range in log-strength."""
    below = None
    for x in xs:
        if track.exhausted:
            return track.result()
        if track(math.exp(x)).met:
            if below is not None:
                _bisect_up(track, below, x, finest)
            return track.result()
        below = x
    width = spacing / 2
    while not track.exhausted and width > finest:
        center = math.log(track.best().strength)
        for x in (center - width, center + width):
            if bounds[0] <= x <= bounds[1] and not track.exhausted:
                track(math.exp(x))
        width /= 2
    return track.result()


def _finest_step(low: float, high: float, points: int, rtol: float) -> float:
    """The grid searches' options checked; the smallest log-strength step their refinements take."""
    _check_range(low, high)
    validation.integer(points, "points", minimum=2, what="an integer of at least 2", error=SearchError)
    validation.number(rtol, "rtol", low=0, error=SearchError)
    return math.log1p(rtol) if rtol > 0 else 1e-9


@SEARCHES.register("scan")
def scan(
    evaluate: Evaluate, *, low: float, high: float, goal: str, target: float, budget: int = 30,
    points: int = 8, rtol: float = 0.25, integer: bool = False, progress: Progress | None = None,
) -> SearchResult:
    """A log-spaced scan of ``points`` strengths over [low, high] (fewer when ``budget`` is smaller), from
    the weakest up, then a refinement with what is left of the budget.

    At the first scanned strength that meets the target the scan stops and bisects (geometrically)
    between it and the scanned strength below, keeping the least strength found that meets it. When
    none meets, it evaluates the midpoints on either side of the best strength seen, halving the spacing
    each round. Either refinement stops once the spacing is below a factor of ``1 + rtol``.
    """
    finest = _finest_step(low, high, points, rtol)
    track = _Tracker(evaluate, goal, target, budget, integer, "scan", progress)
    xs, spacing = _log_grid(low, high, min(points, budget))
    return _scan_up(track, xs, spacing, finest, (math.log(low), math.log(high)))


def _refine_near_best(track: _Tracker, spacing: float, finest: float, bounds: tuple[float, float], rounds: int = 2) -> bool:
    """Up to ``rounds`` rounds of the points either side of the best point so far (``_Tracker.best``; half
    the grid's spacing away, then a quarter), stopping at the first that meets; then the bisection down from it.
    Returns whether a point met. A window narrower than the grid's spacing lies, on a surrogate that rises
    towards it, next to the probe that came closest: a few points there are cheaper than a scan from the
    weakest strength up."""
    if track.exhausted:
        return False
    center = math.log(track.best().strength)
    width = spacing / 2
    for _ in range(rounds):
        for x in (center - width, center + width):
            if track.exhausted or not bounds[0] <= x <= bounds[1] or width <= finest:
                continue
            if track(math.exp(x)).met:
                below = [math.log(p.strength) for p in track.trace if not p.met and math.log(p.strength) < x]
                if below:
                    _bisect_up(track, max(below), x, finest)
                return True
        width /= 2
    return False


@SEARCHES.register("bracket")
def bracket(
    evaluate: Evaluate, *, low: float, high: float, goal: str, target: float, budget: int = 30,
    points: int = 8, rtol: float = 0.25, integer: bool = False, progress: Progress | None = None,
) -> SearchResult:
    """``scan``'s grid, searched by bisection over its points before it is scanned.

    For objectives that meet the target from some strength on and wander below it (``match_reference``
    on TOFU): the first probe is the grid's middle point, each next one the middle of the points that can
    still hold the lowest that meets (above the highest miss, below the lowest hit), so the two neighbours
    that bracket it take about ``log2(points)`` evaluations instead of a scan up to them; then it bisects
    between them as ``scan`` does. Where the points a scan would pass miss and the points above the first
    that meets meet, it chooses what ``scan`` chooses: in fewer evaluations when that point is above the
    grid's lowest three (3 probes for 8 points where a scan spends 6 to reach its sixth point), in as many at
    the third, one or two more at the first two. Where two separate windows meet, it may keep the higher.
    When no probe meets, the points either side of the best probe are tried first (half and a quarter of
    the grid's spacing away, ``_refine_near_best``); when none of them meets either, the grid's other points
    are scanned from the weakest up (every value so far reused) and ``scan``'s refinement follows.
    """
    finest = _finest_step(low, high, points, rtol)
    track = _Tracker(evaluate, goal, target, budget, integer, "bracket", progress)
    xs, spacing = _log_grid(low, high, min(points, budget))
    miss, hit = -1, len(xs)
    while hit - miss > 1 and not track.exhausted:
        probe = (miss + hit) // 2
        if track(math.exp(xs[probe])).met:
            hit = probe
        else:
            miss = probe
    if hit == len(xs):
        bounds = (math.log(low), math.log(high))
        if _refine_near_best(track, spacing, finest, bounds):
            return track.result()
        return _scan_up(track, xs, spacing, finest, bounds)
    if miss >= 0:
        _bisect_up(track, xs[miss], xs[hit], finest)
    return track.result()


@SEARCHES.register("grid")
def grid(
    evaluate: Evaluate, *, low: float, high: float, goal: str, target: float, budget: int = 9,
    integer: bool = False, progress: Progress | None = None, points: int | None = None,
) -> SearchResult:
    """Evaluate ``budget`` strengths evenly spaced in log-strength over [low, high].

    ``points`` is the former name of ``budget``, deprecated; it will be removed in the next release.
    """
    if points is not None:
        warnings.warn("grid(points=N) is deprecated; pass budget=N (the number of points) instead",
                      DeprecationWarning, stacklevel=2)
        budget = points
    _check_range(low, high)
    validation.integer(budget, "a grid needs at least 2 points: budget", minimum=2, what="an integer of at least 2", error=SearchError)
    track = _Tracker(evaluate, goal, target, budget, integer, "grid", progress)
    for i in range(budget):
        track(math.exp(math.log(low) + i * (math.log(high) - math.log(low)) / (budget - 1)))
    return track.result()
