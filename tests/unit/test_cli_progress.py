"""The CLI's progress reporting without a terminal: one timestamped line per new step, for logs and CI."""

from __future__ import annotations

import re

from eco_unlearn.cli.console import progress as _progress


def test_without_a_terminal_each_new_step_is_one_timestamped_line(capsys):
    with _progress("starting") as report:
        for what, done in (("fit: strength 1", 0), ("fit: strength 1", 1), ("fit: strength 2", 2), ("eco: done", 4)):
            report(what, done, 4)
    lines = capsys.readouterr().err.splitlines()
    assert all(re.fullmatch(r"\[\s*\d+\.\ds\] .+", line) for line in lines), lines
    assert [line.split("] ", 1)[1] for line in lines] == ["starting", "fit: strength 1", "fit: strength 2", "eco: done"]
