"""Group Relative Policy Optimisation (GRPO) with exact-checker rewards, restricted to chosen heads.

Per step: P task prompts, each repeated G times, are completed by sampling (temperature, top-p)
with the jitted KV-cache sampler ``models.generate``; each completion gets the reward
r = 1[exact match] (+ ``format_reward`` if it ends its line within the T-token budget). Advantages
are relative to the prompt's group of G (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300):

  A_i = (r_i − mean_g r) / (std_g r + 1e-4)       (std: population, ddof = 0)

or, with ``std_normalize=False``, A_i = r_i − mean_g r (Liu et al. 2025, Dr. GRPO, arXiv
2503.20783, who show the std division re-weights easy and hard prompts). Every completion token t
(up to and including the one that ends the line) carries the clipped surrogate with the k3 KL
estimator to the frozen reference (Schulman 2020; as in DeepSeekMath):

  ρ = exp(logπ − logπ_old),  d = logπ_ref − logπ,
  ℓ_t = −[min(ρ A, clip(ρ, 1−ε, 1+ε) A) − β (exp(d) − d − 1)]

aggregated over tokens: "token" Σ_{i,t} ℓ / #tokens (token-level mean, as in DAPO, Yu et al. 2025,
arXiv 2503.14476), "sequence" mean_i (Σ_t ℓ / |o_i|) (DeepSeekMath's original), or "constant"
Σ ℓ / (B·T) (Dr. GRPO's length-unbiased normaliser). Defaults: DeepSeekMath advantages with the
token-level mean, one update per sample batch (μ = 1, so π_old = π at the update and the clip only
acts for μ > 1), β = 0. log-probabilities come from ``models.score`` traced with
``continuation_length=T`` inside jit, so all shapes are fixed: B = P·G rows, a prompt block of
``max_prompt_tokens`` and T continuation tokens; steps do not recompile. (The sampler pads
prompts to a power-of-two bucket of the batch's longest prompt, so a pool whose prompt lengths
straddle a power of two compiles the sampler once per bucket, then never again.)

Axis letters: B = P·G completions, G group, T continuation tokens.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from synergy_jax import models
from synergy_jax.tasks import batching, families
from synergy_jax.training import loop, modelstate, steps, tuning

ADV_EPS = 1e-4
METRICS = ("loss", "lr", "grad_norm", "reward", "accuracy", "kl", "clip_frac")


def group_advantages(rewards, std_normalize: bool = True) -> np.ndarray:
  """(P, G) rewards -> (P, G) advantages relative to each row's group (module docstring).

  A group of identical rewards gets advantage exactly 0.
  """
  r = np.asarray(rewards, np.float64)
  if r.ndim != 2 or r.shape[1] < 2:
    raise ValueError(f"rewards must be (prompts, group >= 2), got shape {r.shape}")
  if not np.all(np.isfinite(r)):
    bad = np.argwhere(~np.isfinite(r))[0]
    raise ValueError(f"reward of prompt {bad[0]}, sample {bad[1]} is {r[tuple(bad)]}")
  centred = r - r.mean(axis=1, keepdims=True)
  if not std_normalize:
    return centred
  return centred / (r.std(axis=1, keepdims=True) + ADV_EPS)


def grpo_loss(logp, old_logp, ref_logp, advantages, mask, *, clip_eps: float, beta: float,
              aggregation: str = "token"):
  """The GRPO objective to minimise (module docstring) and its diagnostics.

  logp, old_logp, ref_logp (B, T) nats: log-probabilities of the sampled tokens under the policy
  being trained, the sampling policy and the reference; advantages (B,); mask (B, T) 0/1 marks
  completion tokens. Returns (loss scalar, {"kl": mean k3 over tokens, "clip_frac": fraction of
  tokens whose ratio lies outside [1−ε, 1+ε]}).
  """
  mask = jnp.asarray(mask, jnp.float32)
  ratio = jnp.exp(logp - old_logp)                                      # (B, T)
  a = jnp.asarray(advantages, jnp.float32)[:, None]                     # (B, 1)
  surrogate = jnp.minimum(ratio * a, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * a)
  d = ref_logp - logp
  k3 = jnp.exp(d) - d - 1.0                                             # (B, T), >= 0
  per_token = -(surrogate - beta * k3)
  n_tok = jnp.maximum(mask.sum(), 1.0)
  if aggregation == "token":
    loss = jnp.sum(per_token * mask) / n_tok
  elif aggregation == "sequence":
    loss = jnp.mean(jnp.sum(per_token * mask, 1) / jnp.maximum(mask.sum(1), 1.0))
  elif aggregation == "constant":
    loss = jnp.sum(per_token * mask) / mask.size
  else:
    raise ValueError(f"aggregation must be one of {tuning.AGGREGATIONS}, got {aggregation!r}")
  clipped = (ratio < 1 - clip_eps) | (ratio > 1 + clip_eps)
  return loss, {"kl": jnp.sum(k3 * mask) / n_tok, "clip_frac": jnp.sum(clipped * mask) / n_tok}


def completion_mask(tokens: np.ndarray, tokenizer, eos_ids=()) -> tuple[np.ndarray, list[str],
                                                                         np.ndarray]:
  """For sampled continuations (B, T): mask (B, T) float32 of the tokens up to and including the
  first that ends the line (a newline in its text, or an EOS id), the decoded texts, and (B,)
  bool whether the line ended within T."""
  b, t = tokens.shape
  mask = np.zeros((b, t), np.float32)
  ended = np.zeros(b, bool)
  texts = []
  for i, row in enumerate(np.asarray(tokens).tolist()):
    n = t
    for k in range(t):
      if row[k] in eos_ids or families.END in tokenizer.decode(row[:k + 1]):
        n, ended[i] = k + 1, True
        break
    mask[i, :n] = 1.0
    texts.append(tokenizer.decode(row[:n], skip_special_tokens=True))
  return mask, texts, ended


def make_policy_loss(cfg: "tuning.TuneConfig", continuation: int) -> Callable:
  """loss(model, batch) for steps.make_step (model: the policy module); batch = (tokens
  (B, W+T), prompt_lengths (B,), mask (B, T), advantages (B,), old_logp (B, T), ref_logp
  (B, T))."""

  def loss(model, batch):
    tokens, plen, mask, adv, old_lp, ref_lp = batch
    lp = models.score(model, tokens, plen, continuation_length=continuation).token_logprobs
    return grpo_loss(lp, old_lp, ref_lp, adv, mask, clip_eps=cfg.clip_eps, beta=cfg.beta,
                     aggregation=cfg.aggregation)
  return loss


def make_scorer(model, continuation: int) -> Callable:
  """jit(f)(params, rest, tokens, prompt_lengths) -> (B, T) log-probabilities of the
  continuation under the module with nnx.Param state ``params`` (and other variables
  ``rest``; see modelstate.split)."""
  graphdef = modelstate.split(model)[0].graphdef
  return jax.jit(lambda p, rest, tok, plen: models.score(
      nnx.merge(graphdef, p, rest), tok, plen, continuation_length=continuation).token_logprobs)


def sample_batch(model, tokenizer, cfg, step: int) -> dict:
  """Prompts of ``step``, G sampled completions each from the policy ``model`` (the module),
  rewards and advantages (host arrays)."""
  exs = tuning.draw(cfg, step, cfg.batch_size)
  width, t_new = cfg.max_prompt_tokens, tuning.answer_budget(cfg)
  rows = [tuning.encode_prompt(tokenizer, e.prompt, width) for e in exs
          for _ in range(cfg.group_size)]
  batch = batching.left_pad(rows, model.config, width=width)
  ids, plen, valid = batch.ids, batch.lengths, batch.mask
  key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), step)
  gen = models.generate(model, ids, valid, max_new_tokens=t_new,
                        greedy=False, temperature=cfg.temperature, top_p=cfg.top_p, rng=key)
  comp = np.asarray(gen.tokens)                                          # (B, T)
  mask, texts, ended = completion_mask(comp, tokenizer, tuple(model.config.eos_token_ids or ()))
  correct = np.array([families.check(exs[i // cfg.group_size], t) for i, t in enumerate(texts)])
  rewards = correct + cfg.format_reward * ended
  adv = group_advantages(rewards.reshape(cfg.batch_size, cfg.group_size), cfg.std_normalize)
  return {"tokens": np.concatenate([ids, comp], 1), "prompt_lengths": plen, "mask": mask,
          "advantages": adv.reshape(-1).astype(np.float32), "rewards": rewards,
          "correct": correct}


def make_programs(model, cfg, optimizer) -> dict:
  """The jitted pieces of a GRPO step: "score" (params, rest, tokens, prompt_lengths) -> (B, T)
  log-probabilities and "update" (steps.make_step of the policy loss over the nnx.Param
  state). They depend on the architecture and the loss settings only, so runs of other seeds
  and heads reuse them."""
  t_new = tuning.answer_budget(cfg)
  graphdef = modelstate.split(model)[0].graphdef
  return {"score": make_scorer(model, t_new),
          "update": steps.make_step(make_policy_loss(cfg, t_new), optimizer, graphdef)}


def make_step_fn(model, tokenizer, cfg, programs, entry_mask) -> Callable:
  """step_fn(state, step) -> (state, metrics) for runner.run_loop: sample, score, μ updates.

  state["params"] is the policy's nnx.Param state; the reference policy is ``model``'s (the
  base, frozen); sampling key of step s: fold_in(PRNGKey(seed), s).
  """
  scorer, update = programs["score"], programs["update"]
  split, ref_params = modelstate.split(model)

  def step_fn(state, s):
    params, opt_state = state["params"], state["opt_state"]
    b = sample_batch(split.merge(params), tokenizer, cfg, s)
    old_lp = scorer(params, split.rest, b["tokens"], b["prompt_lengths"])
    ref_lp = (scorer(ref_params, split.rest, b["tokens"], b["prompt_lengths"]) if cfg.beta > 0
              else old_lp)
    batch = (b["tokens"], b["prompt_lengths"], b["mask"], b["advantages"], old_lp, ref_lp)
    for _ in range(cfg.updates_per_batch):
      params, opt_state, metrics = update(params, split.rest, opt_state, batch,
                                          {"entry_mask": entry_mask})
    return {"params": params, "opt_state": opt_state}, {
        **metrics, "lr": loop.learning_rate(cfg, s), "reward": float(np.mean(b["rewards"])),
        "accuracy": float(np.mean(b["correct"]))}
  return step_fn
