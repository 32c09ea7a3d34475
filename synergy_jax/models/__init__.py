"""Decoder-only language models in JAX, loaded from Hugging Face checkpoints, with per-head
capture and interventions.

Units are attention heads, numbered unit = layer * num_heads + head everywhere; in
mixture-of-experts models the experts are units too (MoE layer m, expert u: the E routed experts
then the S shared ones; config.moe says which layers are MoE layers and which units are shared).
Families (HF model_type): llama, mistral, qwen2, qwen3 (llama.py); gpt2 (gpt2.py); gpt_neox
(gpt_neox.py); gemma, gemma2, gemma3_text and the text tower of gemma3 (gemma.py); mixtral
(mixtral.py); qwen2_moe, qwen3_moe (qwen_moe.py). Others can register themselves through
`register_family` (see config.py).

  load(path_or_id, *, dtype="float32", mesh=None) -> Model (a flax.nnx.Module; module.py)
  init(config, seed, *, dtype="float32") -> Model;  save(model, directory)
  abstract(config, dtype) -> Model with ShapeDtypeStruct weights (nnx.eval_shape)
  model(input_ids, attention_mask=None, *, head_mask=None, head_means=None) -> ForwardResult
  load_tokenizer(path_or_id);  load_config(path_or_id) -> ModelConfig
  logits_fn(config, *, remat=False) -> f(params, input_ids, attention_mask=None, head_mask=None)
  forward(model, input_ids, attention_mask=None, *, head_mask=None, head_means=None) -> (B, S, V)
  generate(model, input_ids, attention_mask=None, *, max_new_tokens, greedy=True,
           temperature=1.0, top_p=1.0, rng=None, head_mask=None, head_means=None,
           stop_at_eos=False, capture_outputs=False, mesh=None, expert_mask=None,
           expert_activity="dense") -> GenerateResult (expert_norms for MoE models)
  score(model, tokens, prompt_lengths, *, head_mask=None, head_means=None,
        capture_outputs=False, mesh=None, expert_mask=None, expert_activity="dense")
        -> ScoreResult
  perturb_heads(params, heads, sigma, rng) -> params;  head_parameter_mask(params, heads)
  perturb_experts(model, experts, sigma, rng);  head_parameter_mask(model, experts,
        units="experts")
  unit_weight_rms(params);  units_shape(params) -> (layers, heads)
  shard_model(model, mesh), shard_batch(x, mesh)

A Model is built from Flax NNX modules (modules.py: norms, attention, MLPs; a Block per family;
decoder.py scans the stacked Blocks) holding nnx.Param weights; `model.params` is their plain
nested-dict view, the same tree as nnx.state(model, nnx.Param) (layers stacked on a leading
axis; params["layers"]["attn"]["q"] (L, D, N, K); each family file lists its layout) and
`model.replace(params=...)` / `Model(config, params)` its inverse. The family contract (units, sharding, cache layout, segments): contract.py and
docs/adding_a_family.md. Layouts of tokens/head_norms: generation.py.
"""
from synergy_jax.models import _families  # noqa: F401  (registers the families)
from synergy_jax.models.config import (FAMILIES, Family, MoEConfig, ModelConfig, Segment,
                                       UnitParam, register_family)
from synergy_jax.models.generation import GenerateResult, ScoreResult, generate, score
from synergy_jax.models.model import (abstract, cast, forward, init, load, load_config,
                                      load_tokenizer, logits_fn, param_shapes, save)
from synergy_jax.models.module import ForwardResult, Model
from synergy_jax.models.perturb import (head_parameter_mask, head_selection, perturb_experts,
                                        perturb_heads, perturb_selected, unit_params, unit_weight_rms,
                                        units_shape)
from synergy_jax.models.sharding import shard_batch, shard_model

__all__ = [
    "FAMILIES", "Family", "ForwardResult", "GenerateResult", "Model", "ModelConfig", "MoEConfig",
    "ScoreResult", "Segment", "UnitParam", "abstract", "cast", "forward", "generate",
    "head_parameter_mask", "head_selection", "init", "load", "load_config", "load_tokenizer",
    "logits_fn", "param_shapes", "perturb_experts", "perturb_heads", "perturb_selected",
    "register_family", "save",
    "score", "shard_batch", "shard_model", "unit_params", "unit_weight_rms", "units_shape",
]
