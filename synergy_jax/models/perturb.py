"""Parameter interventions on chosen attention heads.

Heads are given either as unit indices (unit = layer * num_heads + head) or as (layer, head)
pairs, or as an (L, H) boolean mask; `head_selection` turns any of these into the mask.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def head_selection(heads, num_layers: int, num_heads: int) -> np.ndarray:
  """(L, H) bool mask from unit indices, (layer, head) pairs, or an (L, H) mask.

  Raises ValueError naming any out-of-range unit (with its layer/head) or pair.
  """
  sel = np.zeros((num_layers, num_heads), bool)
  arr = np.asarray(heads)
  if arr.dtype == bool:
    if arr.shape != sel.shape:
      raise ValueError(f"head mask must have shape (layers, heads) = {sel.shape}, got {arr.shape}")
    return arr.copy()
  if arr.size == 0:
    return sel
  if arr.ndim == 1:
    for u in arr.tolist():
      if not 0 <= u < num_layers * num_heads:
        raise ValueError(f"unit {u} (layer {u // num_heads}, head {u % num_heads}) is out of "
                         f"range for {num_layers} layers x {num_heads} heads")
      sel[u // num_heads, u % num_heads] = True
    return sel
  if arr.ndim == 2 and arr.shape[1] == 2:
    for l, h in arr.tolist():
      if not (0 <= l < num_layers and 0 <= h < num_heads):
        raise ValueError(f"(layer {l}, head {h}) is out of range for {num_layers} layers x "
                         f"{num_heads} heads")
      sel[l, h] = True
    return sel
  raise ValueError(f"heads must be unit indices (n,), (layer, head) pairs (n, 2) or an (L, H) "
                   f"bool mask; got an array of shape {arr.shape}")


@jax.jit
def perturb_selected(params, selected, sigma, rng):
  """Adds N(0, sigma²) noise to the q-projection and output-projection weights of the selected
  heads.

  selected (L, H) bool/float; sigma scalar (absolute standard deviation, in weight units);
  rng a PRNG key. For head h of layer l the noise goes into params["layers"]["q"][l, :, h, :]
  (the HF q_proj rows h*K .. h*K+K-1) and params["layers"]["o"][l, h, :, :] (the HF o_proj
  columns h*K .. h*K+K-1). Other parameters are returned unchanged.
  """
  q, o = params["layers"]["q"], params["layers"]["o"]  # (L, D, H, K), (L, H, K, D)
  kq, ko = jax.random.split(rng)
  sel = jnp.asarray(selected, jnp.float32)
  noise_q = jax.random.normal(kq, q.shape, jnp.float32) * sel[:, None, :, None]
  noise_o = jax.random.normal(ko, o.shape, jnp.float32) * sel[:, :, None, None]
  layers = dict(params["layers"])
  layers["q"] = (q.astype(jnp.float32) + sigma * noise_q).astype(q.dtype)
  layers["o"] = (o.astype(jnp.float32) + sigma * noise_o).astype(o.dtype)
  return {**params, "layers": layers}


def perturb_heads(params, heads, sigma: float, rng):
  """The paper's perturbation: Gaussian noise (std `sigma`) into the query-projection rows and
  output-projection columns of the chosen heads; returns new params.

  heads: unit indices (unit = layer * H + head), (layer, head) pairs, or an (L, H) bool mask;
  the numbers of layers and heads are read from params["layers"]["q"] (L, D, H, K).
  rng: a jax PRNG key or an int seed.
  """
  L, _, H, _ = params["layers"]["q"].shape
  sel = head_selection(heads, L, H)
  key = jax.random.PRNGKey(rng) if isinstance(rng, (int, np.integer)) else rng
  return perturb_selected(params, sel, jnp.float32(sigma), key)


def head_parameter_mask(params, heads):
  """Which parameter entries belong to the chosen heads: a pytree like ``params`` whose leaves
  are bool arrays of each leaf's shape.

  A head's own parameters are its query-projection rows (and their bias) and its
  output-projection columns: ``layers.q[l, :, h, :]``, ``layers.q_bias[l, h, :]``,
  ``layers.o[l, h, :, :]``. Keys, values (shared by query groups under GQA), norms, MLPs,
  embeddings and the output bias belong to no head and are False everywhere.
  heads: unit indices, (layer, head) pairs or an (L, H) bool mask, as in ``head_selection``.
  """
  L, _, H, _ = params["layers"]["q"].shape
  sel = head_selection(heads, L, H)
  owned = {"q": sel[:, None, :, None], "q_bias": sel[:, :, None], "o": sel[:, :, None, None]}

  def leaf_mask(path, leaf):
    names = [getattr(k, "key", None) for k in path]
    if len(names) == 2 and names[0] == "layers" and names[1] in owned:
      return np.broadcast_to(owned[names[1]], np.shape(leaf)).copy()
    return np.zeros(np.shape(leaf), bool)
  return jax.tree_util.tree_map_with_path(leaf_mask, params)
