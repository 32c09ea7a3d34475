"""ops.linear: a projection einsum run as one 2-D matmul over merged axes equals the einsum
(against NumPy in float64 and ops.einsum, every projection spec the families use), and other
specs are passed to the einsum unchanged."""
import jax.numpy as jnp
import numpy as np
import pytest

from synergy_jax.models import ops

SHAPES = {"B": 3, "S": 2, "D": 5, "N": 4, "M": 2, "K": 3, "F": 7, "V": 6, "E": 2}


@pytest.mark.parametrize("spec,merged", [
    ("BSD,DNK->BSNK", 1), ("BSNK,NKD->BSD", 2), ("BSD,DF->BSF", 1), ("BSF,FD->BSD", 1),
    ("BSD,DMK->BSMK", 1), ("BSD,VD->BSV", None), ("BSD,EDF->BSEF", None),
    ("BSNK,KND->BSD", None)])
def test_linear_equals_the_einsum(spec, merged):
  assert ops._as_matmul(spec) == merged  # pylint: disable=protected-access
  ins, _ = spec.split("->")
  lhs, rhs = ins.split(",")
  rng = np.random.default_rng(0)
  x = rng.standard_normal([SHAPES[c] for c in lhs])
  w = rng.standard_normal([SHAPES[c] for c in rhs])
  xj, wj = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
  got = np.asarray(ops.linear(spec, xj, wj))
  assert got.dtype == np.float32 and got.shape == np.einsum(spec, x, w).shape
  # float32 products and accumulation (as ops.einsum): against float64 NumPy and the einsum
  np.testing.assert_allclose(got, np.einsum(spec, x, w), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got, np.asarray(ops.einsum(spec, xj, wj)), rtol=1e-6, atol=1e-6)


def test_linear_names_disagreeing_axes():
  with pytest.raises(ValueError, match=r"disagree on the contracted axes"):
    ops.linear("BSNK,NKD->BSD", jnp.ones((1, 1, 4, 3)), jnp.ones((3, 4, 5)))
