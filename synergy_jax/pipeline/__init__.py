"""End-to-end pipelines behind ``run.py``: each experiment as importable functions.

``experiments/*.py`` only parse flags and call these, so a notebook runs the same pipeline:

  specs        ``--model`` strings → (Model, tokenizer): default, a directory, a hub id, random:...
  capture      prompts → generated tokens and per-head activity a[prompt, unit, t]
  profile      activity → ΦID atoms → per-head ranks, layer profile, diagnostics, nulls, graphs
  emergence    the profile at each shipped training checkpoint
  phase_sweep  order parameters against task difficulty, with a transition analysis
  ablation     behaviour divergence under head ablation, accuracy under head perturbation
  finetune     SFT / GRPO of the synergistic, redundant and random heads, compared over seeds
"""
from synergy_jax.pipeline.capture import Activity, collect_activity
from synergy_jax.pipeline.specs import ModelSpec, model_fingerprint, resolve_model

__all__ = ["Activity", "ModelSpec", "collect_activity", "model_fingerprint", "resolve_model"]
