"""RWKU: forget real people a pretrained model knows, keep their neighbours, under attack."""

from .answers import Answer, AnswerCache, answer_prompts, first_line
from .prompts import probe_prompt
from .run import RwkuReport, RwkuRunConfig, run_rwku, select_probes
from .score import KNOWN_CUT, ProbeResult, group_summary, probe_results, rank_known_targets, summarise

__all__ = [
    "Answer", "AnswerCache", "KNOWN_CUT", "ProbeResult", "RwkuReport", "RwkuRunConfig", "answer_prompts",
    "first_line", "group_summary", "probe_prompt", "probe_results", "rank_known_targets", "run_rwku",
    "select_probes", "summarise",
]
