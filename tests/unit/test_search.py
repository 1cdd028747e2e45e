"""Tests of eco_unlearn.fitting.search with synthetic objectives: plain Python functions of the strength."""

from __future__ import annotations

import contextlib
import json
import math
import signal

import numpy as np
import pytest

from eco_unlearn.errors import EcoUnlearnError
from eco_unlearn.fitting.search import SEARCHES, SearchError, SearchResult, bisection, bracket, grid, scan, zeroth_order


class Counted:
    """Wrap an objective, recording every strength it is evaluated at."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, strength):
        self.calls.append(strength)
        return self.fn(strength)

    def assert_no_repeats(self):
        assert len(set(self.calls)) == len(self.calls), f"a strength was evaluated twice: {self.calls}"


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (instead of hanging the suite) when a search loops forever without evaluating."""

    def expire(signum, frame):
        raise TimeoutError(f"the search did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def step(at: float):
    """1.0 below ``at``, 0.0 from ``at`` on (goal 'min', target 0.5: met exactly when s >= at)."""
    return lambda s: 0.0 if s >= at else 1.0


def test_registry_and_error_type():
    assert SEARCHES == {"bisection": bisection, "zeroth_order": zeroth_order, "scan": scan, "bracket": bracket, "grid": grid}
    assert issubclass(SearchError, EcoUnlearnError)


# ------------------------------------------------------------------------------------- bisection


@pytest.mark.parametrize(
    "fn,target,s_star",
    [
        (lambda s: 1 / (1 + s), 1 / 1.37, 0.37),  # smooth, decreasing
        (step(0.37), 0.5, 0.37),
        (step(7.9), 0.5, 7.9),
        (step(0.0123), 0.5, 0.0123),
    ],
)
@pytest.mark.parametrize("rtol", [0.05, 0.01])
def test_bisection_finds_the_least_strength_within_rtol(fn, target, s_star, rtol):
    f = Counted(fn)
    result = bisection(f, low=0.01, high=10, goal="min", target=target, rtol=rtol)
    assert result.met
    assert s_star * (1 - 1e-12) <= result.strength <= s_star * (1 + rtol)
    assert result.value == pytest.approx(fn(result.strength))
    # a geometric bisection: two end points, then log2(log(high/low) / log(1 + rtol)) halvings
    assert result.evaluations <= 2 + math.ceil(math.log2(math.log(1000) / math.log(1 + rtol)))
    assert result.evaluations == len(f.calls)
    f.assert_no_repeats()
    # the chosen strength is the least met one of the trace, and every point below it misses
    assert result.strength == min(p.strength for p in result.trace if p.met)
    assert all(not p.met for p in result.trace if p.strength < result.strength)


def test_bisection_goal_max():
    f = Counted(lambda s: s / (1 + s))  # increasing; >= 0.8 from s = 4
    result = bisection(f, low=0.01, high=10, goal="max", target=0.8)
    assert result.met and 4 <= result.strength <= 4 * 1.05 + 1e-9
    assert result.goal == "max" and result.target == 0.8
    f.assert_no_repeats()


def test_bisection_unreachable_target_keeps_the_best_point():
    f = Counted(lambda s: 1 / (1 + s))
    result = bisection(f, low=0.01, high=10, goal="min", target=0.01)
    assert not result.met
    assert result.message and "10" in result.message
    assert result.strength == 10 and result.value == pytest.approx(1 / 11)
    assert result.evaluations == len(f.calls) <= 2


def test_bisection_low_already_meets_the_target():
    f = Counted(lambda s: 1 / (1 + s))
    result = bisection(f, low=0.5, high=10, goal="min", target=0.9)
    assert result.met and result.strength == 0.5
    assert result.evaluations == 2
    assert sorted(f.calls) == [0.5, 10]


def test_bisection_respects_the_budget():
    f = Counted(step(0.37))
    result = bisection(f, low=0.01, high=10, goal="min", target=0.5, budget=5, rtol=1e-6)
    assert result.evaluations == len(f.calls) == 5
    assert result.met and result.strength >= 0.37


@pytest.mark.parametrize("k_star", [2, 5, 37, 300])
def test_bisection_integer_rounds_and_finds_the_least_integer(k_star):
    f = Counted(step(k_star))
    with deadline(10):
        result = bisection(f, low=1, high=576, goal="min", target=0.5, integer=True)
    assert result.met
    assert all(float(s).is_integer() for s in f.calls)
    f.assert_no_repeats()
    assert result.evaluations <= 30
    assert result.strength.is_integer()
    assert k_star <= result.strength <= max(k_star + 1, k_star * 1.05)
    if k_star < 20:  # where 5 % is less than one step, the exact least integer
        assert result.strength == k_star


def test_bisection_integer_tiny_range_terminates():
    f = Counted(step(2))
    with deadline(10):
        result = bisection(f, low=1, high=2, goal="min", target=0.5, integer=True)
    assert result.strength == 2 and result.met
    assert sorted(f.calls) == [1.0, 2.0]


def test_bisection_rtol_zero_terminates():
    """An exact search (rtol=0) must stop at the budget or when the bracket cannot shrink any more,
    not spin on cached strengths once sqrt(lo * hi) rounds to lo or hi."""
    f = Counted(lambda s: 1 / (1 + s))
    with deadline(1.5):
        result = bisection(f, low=0.01, high=10, goal="min", target=1 / 1.37, budget=200, rtol=0)
    assert result.met and result.strength == pytest.approx(0.37, rel=1e-9)
    f.assert_no_repeats()


# ---------------------------------------------------------------------------------- zeroth order


def bump(s):
    return math.exp(-((math.log(s) - math.log(0.5)) ** 2))


@pytest.mark.parametrize("start", [None, 0.1, 3.0])
def test_zeroth_order_reaches_the_peak_of_a_bump(start):
    f = Counted(bump)
    with deadline(10):
        result = zeroth_order(f, low=0.01, high=10, goal="max", target=0.9, budget=30, start=start)
    assert result.met, result.message
    assert result.value >= 0.9 and bump(result.strength) == pytest.approx(result.value)
    assert result.evaluations <= 30
    f.assert_no_repeats()


def test_zeroth_order_goal_min_on_a_valley():
    f = Counted(lambda s: 1 - bump(s))
    with deadline(10):
        result = zeroth_order(f, low=0.01, high=10, goal="min", target=0.1, budget=30, start=0.1)
    assert result.met and result.value <= 0.1
    f.assert_no_repeats()


@pytest.mark.parametrize("budget", [3, 4, 7, 10])
def test_zeroth_order_respects_the_budget(budget):
    f = Counted(lambda s: math.sin(3 * math.log(s)))  # oscillating, target unreachable
    with deadline(10):
        result = zeroth_order(f, low=0.01, high=10, goal="max", target=2.0, budget=budget)
    assert not result.met and result.message
    assert result.evaluations == len(f.calls) <= budget
    f.assert_no_repeats()
    assert result.value == max(p.value for p in result.trace)


def test_zeroth_order_escapes_a_flat_start_by_doubling_delta():
    f = Counted(lambda s: 1.0 if s <= 1.0 else 1.0 / s)  # flat up to 1, then decreasing; <= 0.3 from 3.33
    with deadline(10):
        result = zeroth_order(f, low=0.01, high=10, goal="min", target=0.3, budget=30, start=0.1)
    assert result.met and result.strength >= 1 / 0.3
    assert any(s > 1.0 for s in f.calls)
    # the probes spread out: the widest probe around the start is far beyond the initial delta 0.25
    assert max(abs(math.log(s) - math.log(0.1)) for s in f.calls) > 1.0
    f.assert_no_repeats()


def test_zeroth_order_on_a_flat_objective_stops():
    f = Counted(lambda s: 0.5)
    with deadline(10):
        result = zeroth_order(f, low=0.01, high=10, goal="min", target=0.1, budget=30)
    assert not result.met and result.evaluations <= 30
    f.assert_no_repeats()


def test_zeroth_order_start_is_met():
    f = Counted(bump)
    result = zeroth_order(f, low=0.01, high=10, goal="max", target=0.9, start=0.5)
    assert result.met and result.evaluations == 1 and result.strength == pytest.approx(0.5)


def test_zeroth_order_start_outside_the_range_is_projected():
    f = Counted(bump)
    zeroth_order(f, low=0.01, high=10, goal="max", target=2.0, start=1000.0, budget=4)
    assert f.calls[0] == pytest.approx(10.0)


@pytest.mark.parametrize(
    "fn,goal,target",
    [
        (lambda s: math.log(s), "max", 100.0),  # best at the top of the range, target unreachable
        (lambda s: -math.log(s), "min", -100.0),
        (lambda s: math.log(s), "min", -100.0),  # best at the bottom of the range
    ],
)
def test_zeroth_order_terminates_when_the_optimum_is_on_the_range_boundary(fn, goal, target):
    """Once x is projected onto a bound, its probes are all cached; the search must still return (by
    budget or by noticing it cannot move) instead of looping forever without evaluating."""
    f = Counted(fn)
    with deadline(1.5):
        result = zeroth_order(f, low=0.01, high=10, goal=goal, target=target, budget=30)
    assert not result.met and result.evaluations <= 30
    best = 10.0 if (goal == "max") == (fn(10.0) > fn(0.01)) else 0.01
    assert result.strength == pytest.approx(best, rel=1e-6)


def test_zeroth_order_integer():
    f = Counted(lambda s: -abs(math.log(s) - math.log(40)))  # peak at 40 of [1, 576]
    with deadline(10):
        result = zeroth_order(f, low=1, high=576, goal="max", target=-0.1, budget=30, integer=True)
    assert all(float(s).is_integer() and 1 <= s <= 576 for s in f.calls)
    f.assert_no_repeats()
    assert result.evaluations <= 30
    assert result.met and 37 <= result.strength <= 44


# ------------------------------------------------------------------------------------------ scan


def plateau(s):
    """TOFU's surrogate in miniature (seed 2 of the first compare): below 30 a KS p-value that creeps up
    towards weaker strengths, so a slope estimated there points away from the only region that meets the
    target, a plateau between 30 and 150."""
    if 30 <= s <= 150:
        return 0.95
    return 0.35 - 0.03 * math.log(s) if s < 30 else 0.1


def test_scan_finds_a_plateau_that_descent_from_the_middle_walks_away_from():
    low, high = 0.135, 405.0
    with deadline(10):
        descent = zeroth_order(Counted(plateau), low=low, high=high, goal="max", target=0.9, budget=30)
        f = Counted(plateau)
        found = scan(f, low=low, high=high, goal="max", target=0.9, budget=30)
    assert not descent.met and max(p.strength for p in descent.trace) < 30
    assert found.met and 30 <= found.strength <= 150
    assert found.evaluations <= 12
    f.assert_no_repeats()


def test_scan_stops_at_the_first_strength_that_meets_and_bisects_below_it():
    f = Counted(step(3.0))
    with deadline(10):
        result = scan(f, low=0.01, high=100, goal="min", target=0.5, points=5, rtol=0.05)
    scanned = [0.01 * 10 ** i for i in range(5)]  # 0.01, 0.1, 1, 10, 100
    np.testing.assert_allclose(f.calls[:4], scanned[:4], rtol=1e-12)  # 100 is never evaluated
    assert result.met and 3.0 <= result.strength <= 3.0 * 1.05
    assert all(1.0 < s < 10.0 for s in f.calls[4:])
    f.assert_no_repeats()


def test_scan_low_meets_at_once():
    f = Counted(step(0.001))
    result = scan(f, low=0.01, high=100, goal="min", target=0.5)
    assert result.met and result.evaluations == 1 and result.strength == pytest.approx(0.01)


def test_scan_unmet_refines_around_the_best_point():
    f = Counted(lambda s: -abs(math.log(s) - math.log(2.0)))  # peak at 2, target unreachable
    with deadline(10):
        result = scan(f, low=0.01, high=100, goal="max", target=1.0, points=5, rtol=0.05, budget=30)
    assert not result.met and result.message
    assert result.strength == pytest.approx(2.0, rel=0.1)  # the scan alone gets within a factor of 2
    assert result.evaluations <= 30
    f.assert_no_repeats()


@pytest.mark.parametrize("search", [scan, bracket])
@pytest.mark.parametrize("budget", [2, 3, 8, 11])
def test_scan_and_bracket_respect_the_budget(search, budget):
    f = Counted(lambda s: math.sin(3 * math.log(s)))
    with deadline(10):
        result = search(f, low=0.01, high=10, goal="max", target=2.0, budget=budget)
    assert result.evaluations == len(f.calls) <= budget
    assert result.value == max(p.value for p in result.trace)
    f.assert_no_repeats()


def test_scan_integer():
    f = Counted(lambda s: 0.0 if s >= 37 else 1.0)
    with deadline(10):
        result = scan(f, low=1, high=576, goal="min", target=0.5, integer=True, rtol=0.0)
    assert all(float(s).is_integer() for s in f.calls)
    assert result.met and result.strength == 37
    f.assert_no_repeats()


@pytest.mark.parametrize("points,rtol", [(1, 0.25), (2.5, 0.25), (8, -0.1)])
def test_scan_bad_options(points, rtol):
    with pytest.raises(SearchError, match="points|rtol"):
        scan(lambda s: s, low=0.1, high=1, goal="min", target=0.5, points=points, rtol=rtol)


# ------------------------------------------------------------------------------------------ bracket


def surrogate_like(first_met: float, seed: int):
    """Noisy misses below ``first_met`` (values wander 0.15-0.7), hits from it on: TOFU's surrogate shape."""
    rng = np.random.default_rng(seed)
    noise = {}

    def f(s):
        if s >= first_met:
            return 0.95
        return noise.setdefault(s, float(rng.uniform(0.15, 0.7)))

    return f


@pytest.mark.parametrize("first_met", [0.2, 1.5, 13.0, 35.0, 41.1, 120.0, 400.0])
def test_bracket_chooses_what_scan_chooses_in_fewer_evaluations_when_hits_stay_hits(first_met):
    low, high = 0.135, 405.0
    with deadline(10):
        scanned = scan(Counted(surrogate_like(first_met, 0)), low=low, high=high, goal="max", target=0.9)
        f = Counted(surrogate_like(first_met, 0))
        found = bracket(f, low=low, high=high, goal="max", target=0.9)
    assert found.met and found.strength == scanned.strength
    assert found.evaluations <= scanned.evaluations + 2  # 3 probes where a scan meets at its first or second point
    if first_met > 10:  # the sixth of 8 points or above: what TOFU's fit meets
        assert found.evaluations <= scanned.evaluations - 2
    f.assert_no_repeats()


def test_bracket_probes_the_middle_first_and_halves():
    f = Counted(step(3.0))
    result = bracket(f, low=0.01, high=100, goal="min", target=0.5, points=5, rtol=0.05)
    np.testing.assert_allclose(f.calls[:2], [1.0, 10.0], rtol=1e-12)  # the middle of 0.01..100, then above it
    assert result.met and 3.0 <= result.strength <= 3.0 * 1.05


def test_bracket_falls_back_to_the_scan_when_no_probe_meets():
    low, high = 0.135, 405.0  # met only between 1 and 2: a window every probe of the bisection steps over
    f = Counted(lambda s: 0.95 if 1.0 <= s <= 2.0 else 0.3)
    with deadline(10):
        found = bracket(f, low=low, high=high, goal="max", target=0.9)
        scanned = scan(Counted(lambda s: 0.95 if 1.0 <= s <= 2.0 else 0.3), low=low, high=high, goal="max", target=0.9)
    assert found.met and found.strength == scanned.strength
    f.assert_no_repeats()


def test_bracket_unreachable_target_refines_around_the_best_point_like_the_scan():
    fn = lambda s: -abs(math.log(s) - math.log(2.0))  # noqa: E731
    with deadline(10):
        found = bracket(Counted(fn), low=0.01, high=100, goal="max", target=1.0, points=5, rtol=0.05)
        scanned = scan(Counted(fn), low=0.01, high=100, goal="max", target=1.0, points=5, rtol=0.05)
    assert not found.met and found.strength == pytest.approx(scanned.strength) and found.message


def test_bracket_may_keep_the_higher_of_two_windows_that_meet():
    """Documented behaviour: two separate windows that meet, the bisection's probes land in the upper one."""
    low, high = 0.135, 405.0  # grid 0.135, 0.42, 1.33, 4.17, 13.1, 41.1, 129, 405
    fn = lambda s: 0.95 if 1.0 <= s <= 2.0 or 30 <= s <= 60 else 0.3  # noqa: E731
    with deadline(10):
        found = bracket(Counted(fn), low=low, high=high, goal="max", target=0.9)
        scanned = scan(Counted(fn), low=low, high=high, goal="max", target=0.9)
    assert found.met and scanned.met and 1.0 <= scanned.strength <= 2.0 and 30 <= found.strength <= 60



# ------------------------------------------------------------------------------------------ grid


@pytest.mark.parametrize("points", [2, 5, 9, 30])
def test_grid_evaluates_evenly_spaced_log_strengths_including_both_ends(points):
    f = Counted(lambda s: 1 / (1 + s))
    result = grid(f, low=0.01, high=100, goal="min", target=0.5, budget=points)
    assert result.evaluations == len(f.calls) == points
    assert f.calls == sorted(f.calls)
    assert f.calls[0] == pytest.approx(0.01, rel=1e-12)
    assert f.calls[-1] == pytest.approx(100, rel=1e-12)
    np.testing.assert_allclose(np.diff(np.log(f.calls)), math.log(1e4) / (points - 1), rtol=1e-9)
    # least strength meeting value <= 0.5 (s >= 1)
    assert result.met and result.strength == min(s for s in f.calls if s >= 1 - 1e-12)


def test_grid_with_interpolation_range_stays_within_it():
    """shuffle/reverse strengths top out at exactly 1.0; the grid's last point must not exceed it."""
    for points in range(2, 41):
        f = Counted(lambda s: s)
        grid(f, low=0.01, high=1.0, goal="min", target=0.0, budget=points)
        assert max(f.calls) <= 1.0 and f.calls[-1] == pytest.approx(1.0)


def test_grid_integer_dedupes_rounded_strengths():
    f = Counted(lambda s: s)
    result = grid(f, low=1, high=4, goal="max", target=3, budget=9, integer=True)
    assert sorted(f.calls) == [1.0, 2.0, 3.0, 4.0]
    assert result.evaluations == 4 and result.strength == 3.0 and result.met


def test_grid_unmet_keeps_the_best_value():
    result = grid(lambda s: 1 / (1 + s), low=0.01, high=10, goal="min", target=0.0, budget=5)
    assert not result.met and result.strength == pytest.approx(10) and result.message


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("low,high", [(0, 10), (-1, 10), (5, 5), (10, 1), (0.01, math.inf), (math.nan, 1), (0.1, math.nan)])
@pytest.mark.parametrize("method", ["bisection", "zeroth_order", "scan", "bracket", "grid"])
def test_bad_ranges(method, low, high):
    f = Counted(lambda s: s)
    with pytest.raises(SearchError, match="range"):
        SEARCHES[method](f, low=low, high=high, goal="min", target=0.5)
    assert f.calls == []


@pytest.mark.parametrize("budget", [0, 1, -3, 2.5, "10"])
@pytest.mark.parametrize("method", ["bisection", "zeroth_order", "scan", "bracket", "grid"])
def test_bad_budget(method, budget):
    with pytest.raises(SearchError, match="budget"):
        SEARCHES[method](lambda s: s, low=0.1, high=1, goal="min", target=0.5, budget=budget)


@pytest.mark.parametrize("points", [0, 1])
def test_grid_needs_two_points(points):
    with pytest.raises(SearchError, match="2 points"):
        grid(lambda s: s, low=0.1, high=1, goal="min", target=0.5, budget=points)


def test_grid_points_is_a_deprecated_name_of_budget():
    f = Counted(lambda s: s)
    with pytest.deprecated_call(match="budget"):
        result = grid(f, low=0.1, high=1, goal="min", target=0.0, points=4)
    assert result.evaluations == len(f.calls) == 4


def test_every_search_takes_the_same_budget_keyword():
    """The fit calls every registered search the same way: budget is the most evaluations made."""
    for method in SEARCHES:
        f = Counted(lambda s: 1.0)  # never meets the target: every search spends what it may
        result = SEARCHES.get(method)(f, low=0.1, high=10, goal="min", target=0.0, budget=5)
        assert 1 <= result.evaluations == len(f.calls) <= 5, method


@pytest.mark.parametrize("method", ["bisection", "zeroth_order", "scan", "bracket", "grid"])
def test_bad_goal(method):
    with pytest.raises(SearchError, match="goal"):
        SEARCHES[method](lambda s: s, low=0.1, high=1, goal="maximise", target=0.5)


# ----------------------------------------------------------------------------- results, progress


def test_result_to_dict_is_json_serialisable():
    result = bisection(lambda s: 1 / (1 + s), low=0.01, high=10, goal="min", target=0.5)
    assert isinstance(result, SearchResult)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["evaluations"] == result.evaluations == len(data["trace"])
    assert data["method"] == "bisection" and data["met"] is True
    assert set(data["trace"][0]) == {"strength", "value", "met", "exact"}
    assert data["strength"] == result.strength


def test_progress_is_reported_per_evaluation():
    events = []
    result = grid(lambda s: s, low=1, high=2, goal="min", target=0, budget=3, progress=lambda what, done, total: events.append((what, done, total)))
    assert len(events) == 2 * result.evaluations
    assert all(total == 3 for _, _, total in events)
    assert [done for _, done, _ in events] == [0, 1, 1, 2, 2, 3]
    assert all(what.startswith("grid:") for what, _, _ in events)
