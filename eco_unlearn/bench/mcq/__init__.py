"""Multiple-choice unlearning: MMLU-format and WMDP-format questions scored by answer-letter logits and by
length-normalised choice likelihood, and the MMLU-subset experiment (forget, related, other subjects)."""

from .experiment import McqRunConfig, guard_items, load_questions, run_mcq, subject_accuracies
from .lmeval_tasks import task_name, write_lm_eval_tasks
from .prompts import LETTERS, cloze_prompt, header, letter_prefix, letter_token_ids, letters_prompt
from .report import FLOORS, McqReport, markdown_table, subject_table, write_results
from .scoring import METHODS, QuestionScore, ScoreCache, question_key, score_questions
from .settings import SETTINGS, McqSetting, SampleSizes, by_subject, scored_questions, training_pool
from .stats import Accuracy, FlagRates, accuracy

__all__ = [
    "FLOORS", "LETTERS", "METHODS", "SETTINGS", "Accuracy", "FlagRates", "McqReport", "McqRunConfig", "McqSetting",
    "QuestionScore", "SampleSizes", "ScoreCache", "accuracy", "by_subject", "cloze_prompt", "guard_items", "header",
    "letter_prefix", "letter_token_ids", "letters_prompt", "load_questions", "markdown_table", "question_key",
    "run_mcq", "score_questions", "scored_questions", "subject_accuracies", "subject_table", "task_name",
    "training_pool", "write_lm_eval_tasks", "write_results",
]
