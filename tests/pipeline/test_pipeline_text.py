"""pipeline.text.fmt: the one number formatter of summaries, verdicts and training logs.

Expected strings are written out by hand: they are what the three formatters fmt replaced
(training/runner, pipeline/finetune_report, pipeline/engineer/analysis) printed."""
import math

import numpy as np
import pytest

from synergy_jax.pipeline.text import fmt

NAN, INF = float("nan"), float("inf")


def test_summary_default_digits_and_missing_values():
  assert fmt(0.123456) == "0.123"
  assert fmt(1234.5) == "1.23e+03"
  assert fmt(0.5, 2, "f") == "0.50"
  assert fmt(np.float32(0.25), 2) == "0.25"
  for missing in (None, NAN, INF, -INF, np.float64("nan")):
    assert fmt(missing) == "n/a"
  assert fmt("step0") == "step0"  # a label is written as it is


def test_training_log_cells_read_back_with_float():
  # runner's old f"{float(v):.6g}": six significant digits, NaN and ±inf as Python writes them
  assert fmt(0.1234567891, 6, nonfinite="float") == "0.123457"
  assert fmt(np.float32(2.0), 6, nonfinite="float") == "2"
  assert [fmt(v, 6, nonfinite="float") for v in (NAN, INF, -INF)] == ["nan", "inf", "-inf"]
  assert math.isnan(float(fmt(NAN, 6, nonfinite="float")))


def test_signed_infinity_for_effect_sizes():
  # finetune_report's old _fmt: ±inf (a Hedges' g of groups that do not overlap) as ∞ / −∞
  assert fmt(INF, nonfinite="signed") == "∞"
  assert fmt(-INF, nonfinite="signed") == "−∞"
  assert fmt(NAN, nonfinite="signed") == "n/a"
  assert fmt(None, nonfinite="signed") == "n/a"
  assert fmt(1.0 / 3.0, 2, nonfinite="signed") == "0.33"


def test_unknown_nonfinite_rule_is_named():
  with pytest.raises(ValueError, match="nonfinite"):
    fmt(1.0, nonfinite="nan")
