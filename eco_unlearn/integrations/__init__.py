"""Bridges to other tools. Each module imports its tool, so import the one you use:
``import eco_unlearn.integrations.lm_eval`` registers the ``eco`` model in lm-evaluation-harness
(the ``lm_eval`` command finds it through the ``lm_eval.models`` entry point without an import)."""
