"""Task suite: difficulty-graded families with exact checkers, and prompt suites.

``FAMILIES``, ``levels(family)``, ``sample(family, level, n, seed)``, ``check(example, output)``,
``evaluate(model, tokenizer, family, level, n, seed)`` (greedy exact match through
``models.generate``), ``prompt_suite()``, ``load_prompts(path)``; ``batching.left_pad`` (the one
left-padding helper and pad-id rule for ``models.generate``/``models.score`` batches).
"""
from synergy_jax.tasks.evaluation import evaluate, generate_answers
from synergy_jax.tasks.families import (END, FAMILIES, Example, check, levels,
                                        max_answer_length, sample, solve)
from synergy_jax.tasks.prompts import CATEGORIES, Prompt, load_prompts, prompt_suite

__all__ = ["END", "FAMILIES", "Example", "check", "levels", "max_answer_length", "sample", "solve",
           "CATEGORIES", "Prompt", "load_prompts", "prompt_suite", "evaluate", "generate_answers"]
