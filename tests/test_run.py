"""run.py dispatch and the experiments' flags."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENTS = ("profile", "phase_sweep", "ablation", "train", "emergence")


def test_experiment_modules_share_flags_without_clashes():
  # One process imports every experiment: a flag defined twice would raise DuplicateFlagError.
  code = ("import sys; sys.argv = ['x']\n" +
          "".join(f"import experiments.{n}\n" for n in EXPERIMENTS) + "print('imported')")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "imported" in proc.stdout


def test_helpfull_documents_each_experiment():
  for name, flag in (("profile", "--surrogates"), ("emergence", "--checkpoint_steps"),
                     ("phase_sweep", "--order_parameter"), ("ablation", "--sigmas")):
    proc = subprocess.run([sys.executable, "run.py", f"--experiment={name}", "--helpfull"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert flag in text and "--model" in text and "--quick" in text, (name, text[-2000:])


def test_unknown_experiment_is_named():
  proc = subprocess.run([sys.executable, "run.py", "--experiment=nonsense"], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert "nonsense" in proc.stderr and "profile" in proc.stderr
