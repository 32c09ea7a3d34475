"""The ΦID lattice: 16 atoms, the 16 redundancy-function values, and the linear map between them.

Two sources in the past (x_p, y_p) and the same two in the future (x_f, y_f). A node of the
two-source PID lattice is one of

  r = {1}{2}  (what both sources carry: redundancy)
  x = {1}     (what x carries)
  y = {2}     (what y carries)
  s = {12}    (what only the pair carries: synergy)

ordered r ≤ x ≤ s and r ≤ y ≤ s (x and y incomparable). The ΦID lattice is the product of the past
lattice and the future lattice; the atom ``"atb"`` (a, b ∈ {r, x, y, s}) is the information that
past node a hands to future node b. ``ATOMS`` lists them with the past node major.

The redundancy function ``R[a, b]`` (the "double-redundancy" of node a about node b) is the sum of
all atoms below (a, b) in the product order:

  R[a, b] = Σ_{a' ≤ a, b' ≤ b} atom[a' t b'],   i.e. R = LATTICE @ atoms,   LATTICE = ZETA ⊗ ZETA.

Its 16 values are measurable quantities:

  R[x,x] = I(x_p; x_f)          R[x,y] = I(x_p; y_f)          R[x,s] = I(x_p; x_f,y_f)
  R[y,x] = I(y_p; x_f)          R[y,y] = I(y_p; y_f)          R[y,s] = I(y_p; x_f,y_f)
  R[s,x] = I(x_p,y_p; x_f)      R[s,y] = I(x_p,y_p; y_f)      R[s,s] = I(x_p,y_p; x_f,y_f) (TDMI)
  R[r,x] = Red(x_p, y_p → x_f)  R[r,y] = Red(x_p, y_p → y_f)  R[r,s] = Red(x_p, y_p → x_f y_f)
  R[x,r] = Red(x_f, y_f → x_p)  R[y,r] = Red(x_f, y_f → y_p)  R[s,r] = Red(x_f, y_f → x_p y_p)
  R[r,r] = double redundancy

(nine mutual informations, six PID redundancies and the double redundancy), and the atoms follow
by Möbius inversion: ``atoms = MOBIUS @ R`` with ``MOBIUS = inv(ZETA) ⊗ inv(ZETA)``.
All values are in nats.
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

# Node order of the two-source PID lattice; the index of a node in this tuple is used everywhere.
NODES = ("r", "x", "y", "s")

ATOMS = tuple(a + "t" + b for a in NODES for b in NODES)
assert ATOMS == ("rtr", "rtx", "rty", "rts", "xtr", "xtx", "xty", "xts",
                 "ytr", "ytx", "yty", "yts", "str", "stx", "sty", "sts")

# ZETA[a, a'] = 1 when a' ≤ a in the PID lattice (rows/columns in NODES order).
ZETA = np.array([[1, 0, 0, 0],
                 [1, 1, 0, 0],
                 [1, 0, 1, 0],
                 [1, 1, 1, 1]], dtype=np.int64)

# R = LATTICE @ atoms (16 × 16, both in ATOMS order: index 4 * past + future).
LATTICE = np.kron(ZETA, ZETA)

# atoms = MOBIUS @ R. Integer entries in {-1, 0, 1}: inv(ZETA) = [[1,0,0,0],[-1,1,0,0],
# [-1,0,1,0],[1,-1,-1,1]].
MOBIUS = np.kron(np.round(np.linalg.inv(ZETA)).astype(np.int64),
                 np.round(np.linalg.inv(ZETA)).astype(np.int64))
assert np.array_equal(MOBIUS @ LATTICE, np.eye(16, dtype=np.int64))

# The nine mutual informations, named by (past set, future set); index into a (..., 9) array.
#   "x" = x alone, "y" = y alone, "s" = both.  E.g. "xs" = I(x_p; x_f, y_f).
MI_NAMES = ("xx", "xy", "yx", "yy", "xs", "ys", "sx", "sy", "ss")
MI_INDEX = {name: k for k, name in enumerate(MI_NAMES)}

# PID redundancies: lattice slot → (candidate 1, candidate 2, joint). The redundancy of two
# sources about one target; the candidates are the single-source mutual informations and the
# joint is the mutual information of both sources with the target (used by CCS only).
#   R[r,x] = Red(x_p, y_p → x_f): candidates I(x_p;x_f), I(y_p;x_f), joint I(x_p,y_p;x_f), ...
PID_REDUNDANCIES = {
    "rtx": ("xx", "yx", "sx"),
    "rty": ("xy", "yy", "sy"),
    "rts": ("xs", "ys", "ss"),
    "xtr": ("xx", "xy", "xs"),
    "ytr": ("yx", "yy", "ys"),
    "str": ("sx", "sy", "ss"),
}
# Candidates of the double redundancy (MMI: the one with the smallest mean).
DOUBLE_CANDIDATES = ("xx", "xy", "yx", "yy")

# Lattice slot of each mutual information: I(a_p; b_f) is R[a, b].
MI_SLOT = {name: ATOMS.index(name[0] + "t" + name[1]) for name in MI_NAMES}

# rtr − sts as a linear function of R: its R[r,r] coefficient is zero, so it is the "double
# co-information" fixed by the other 15 lattice values. CCS keeps it as the double redundancy where
# its local sign agrees with the four single-variable local mutual informations.
DOUBLE_COINFO = (MOBIUS[ATOMS.index("rtr")] - MOBIUS[ATOMS.index("sts")]).astype(np.int64)
assert DOUBLE_COINFO[ATOMS.index("rtr")] == 0


def _signed_sums(values, matrix):
  """(..., 16) → (..., rows): row r is Σ_k matrix[r, k] · values[..., k] for entries in {-1, 0, 1},
  written as signed sums (exact in any precision, no matrix-multiply precision involved)."""
  out = []
  for row in matrix:
    terms = [values[..., k] if w > 0 else -values[..., k] for k, w in enumerate(row) if w != 0]
    total = terms[0]
    for t in terms[1:]:
      total = total + t
    out.append(total)
  if isinstance(values, np.ndarray):
    return np.stack(out, axis=-1)
  return jnp.stack(out, axis=-1)


@jax.custom_jvp
def _mobius_jax(values):
  return _signed_sums(values, MOBIUS)


@_mobius_jax.defjvp
def _mobius_jvp(primals, tangents):
  # The map is linear, so the tangent is the same map; written as one matrix product its
  # transpose (reverse mode) is one matrix product too. JAX's own transpose of the 81 channel
  # slices of the signed sums pads each back to (..., 16) and adds them, holding dozens of
  # (U, U, 16) arrays at once in all_pairs' backward. Entries ±1: "highest" keeps it exact in
  # float32 on accelerators up to the order of the additions.
  (values,), (tangent,) = primals, tangents
  m = jnp.asarray(MOBIUS, tangent.dtype)
  return _signed_sums(values, MOBIUS), jnp.einsum("...k,ak->...a", tangent, m,
                                                  precision="highest")


def atoms_from_lattice_values(values):
  """Möbius inversion of the lattice: (..., 16) values R in ATOMS slot order → (..., 16) atoms.

  Works on NumPy and JAX arrays; the map has entries in {-1, 0, 1}, so it is written as signed sums
  (exact in any precision, no matrix-multiply precision setting involved). Units: nats in, nats out.
  Under differentiation the tangent map is one matrix product (``_mobius_jvp``).
  """
  if isinstance(values, np.ndarray):
    return _signed_sums(values, MOBIUS)
  return _mobius_jax(values)


def lattice_values(mis, redundancy, mean, averages=None, smooth_min=None):
  """The 16 redundancy-function values from the nine (local) mutual informations.

  Args:
    mis: dict MI name (see ``MI_NAMES``) → array (..., S). Either local values over a sample axis S
      or, for MMI only, average values with S = 1 or no sample axis at all (nats).
    redundancy: "mmi" (minimum mutual information: of the candidate series, the one with the
      smallest mean) or "ccs" (common change in surprisal: the local co-information where the
      signs of all local terms agree, else 0).
    mean: function (..., S) → (..., 1), the average over the sample axis keeping it (a plain mean
      for samples, a probability-weighted sum for a discrete joint table, the identity for
      averages).
    averages: optional dict MI name → (..., 1) averages used for the MMI choice instead of
      ``mean(mis[name])`` (e.g. pooled averages when ``mis`` holds one prompt of a pooled
      estimate).
    smooth_min: None (hard minimum) or a temperature (nats) for MMI's ``soft_minimum``; only for
      average values (``mean`` the identity): a soft minimum of local series has no meaning.
  Returns:
    tuple of 16 arrays (..., S), R[slot] in ATOMS slot order, nats.
  """
  avg = (lambda name: mean(mis[name])) if averages is None else averages.__getitem__
  if smooth_min is not None:
    pick = lambda names: soft_minimum([mis[c] for c in names], smooth_min)
  else:
    pick = lambda names: _smallest_mean([mis[c] for c in names], [avg(c) for c in names])
  vals = [None] * 16
  for name in MI_NAMES:
    vals[MI_SLOT[name]] = mis[name]
  for slot, (c1, c2, joint) in PID_REDUNDANCIES.items():
    k = ATOMS.index(slot)
    if redundancy == "mmi":
      vals[k] = pick((c1, c2))
    else:
      vals[k] = _ccs([mis[c1], mis[c2], mis[joint]], mis[c1] + mis[c2] - mis[joint])
  rtr = ATOMS.index("rtr")
  if redundancy == "mmi":
    vals[rtr] = pick(DOUBLE_CANDIDATES)
  else:
    coinfo = 0.0
    for k, w in enumerate(DOUBLE_COINFO):
      if w:
        coinfo = coinfo + w * vals[k]
    vals[rtr] = _ccs([mis[c] for c in DOUBLE_CANDIDATES], coinfo)
  return tuple(vals)


def soft_minimum(values, temperature):
  """−t·log Σ_k exp(−v_k / t) of equally shaped arrays ``values`` (nats), t = ``temperature``.

  Smooth everywhere; its gradient is the softmax weights exp(−v_k/t) / Σ exp(−v_j/t) over the
  candidates. min_k v_k − t·log(k) ≤ soft_minimum ≤ min_k v_k, and it tends to the minimum as
  t → 0. Subtracting the same offset from every v_k commutes with it (bias correction).
  """
  stacked = jnp.stack(jnp.broadcast_arrays(*values), axis=0)
  return -temperature * logsumexp(-stacked / temperature, axis=0)


def _smallest_mean(candidates, means):
  """The candidate whose mean is smallest (ties: the first), kept as a whole local series.

  Reverse mode: the gradient is that of the chosen candidate (``jnp.where`` routes it), so at an
  exact tie of means it is the first tied candidate's gradient, one of the valid subgradients.
  """
  best, best_mean = candidates[0], means[0]
  for cand, m in zip(candidates[1:], means[1:]):
    take = m < best_mean
    best = jnp.where(take, cand, best)
    best_mean = jnp.where(take, m, best_mean)
  return best


def _ccs(terms, coinfo):
  """Local co-information kept where its sign equals the sign of every local term, else 0.

  Reverse mode: ``jnp.sign`` has derivative 0, so each sample contributes the co-information's
  gradient where the signs agree and 0 elsewhere. The rule is discontinuous where a local term
  changes sign while the co-information does not (the sample's value jumps between the
  co-information and 0); the gradient ignores those jumps (it is the derivative of the branch in
  force, exact whenever no sample's sign pattern changes). At an exact 0 of a term the sign is 0
  and the sample keeps its value only if the co-information is 0 as well, so the value is 0.
  """
  # One stacked comparison rather than a chain of ands: the same values, and it halves the
  # compile time of reverse mode through the CCS lattice on XLA:CPU (13.7 s → 5.8 s, one pair).
  stacked = jnp.stack(jnp.broadcast_arrays(*terms))
  agree = jnp.all(jnp.sign(stacked) == jnp.sign(coinfo), axis=0)
  return jnp.where(agree, coinfo, jnp.zeros_like(coinfo))
