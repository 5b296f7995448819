"""What a plugin author and a new user meet: declared orders checked by the kit, the NFE budget
rule enforced by the harness, signatures checked at load, one-line broken-plugin messages that
unknown names point to, "did you mean", option listings, and `zoo bench`'s exit status."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from zoo.bench import _nfe_grid, budget
from zoo.cli import main
from zoo.contracts import Sampler
from zoo.errors import ZooError
from zoo.registry import get_registry, set_registry
from zoo.sampling import generate
from zoo.testing import TinyMixture, check_sampler, registered

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "zoo-example-plugin"


@dataclass(frozen=True)
class Midpoint(Sampler):
    """Explicit midpoint, second order: the half step is evaluated at the half time."""

    name: ClassVar[str] = "midpoint-test"
    order: ClassVar[int] = 2

    def steps_for(self, nfe):
        return max(1, nfe // 2)

    def min_nfe(self):
        return 2

    def sample(self, process, x, grid, noise):
        times = [float(t) for t in grid]
        for t, t_next in zip(times[:-1], times[1:]):
            h = t - t_next
            x = x + h * process.ode_drift(x + 0.5 * h * process.ode_drift(x, t), self.half(t, h))
        return x

    def half(self, t, h):
        return t - 0.5 * h


@dataclass(frozen=True)
class WrongMidpoint(Midpoint):
    """The same update with the half step evaluated at the start time: order 1 in fact."""

    name: ClassVar[str] = "wrong-midpoint"

    def half(self, t, h):
        return t


@dataclass(frozen=True)
class NoMinimum(Midpoint):
    """Two NFE per step, without saying so: a budget of 1 NFE is overspent."""

    name: ClassVar[str] = "no-minimum"

    def min_nfe(self):
        return 1


def test_the_kit_measures_the_declared_order_and_fails_a_wrong_one() -> None:
    report = check_sampler(Midpoint)
    assert report["order"] == pytest.approx(2.0, abs=0.15) and report["min_nfe"] == 2
    with pytest.raises(AssertionError, match=r"sampler 'wrong-midpoint' .*declares order 2 but converges at order 0\.9"):
        check_sampler(WrongMidpoint)


def test_the_example_plugin_declares_its_order_and_passes() -> None:
    sys.path.insert(0, str(EXAMPLE))
    try:
        import zoo_example_plugin

        with registered(zoo_example_plugin):
            assert check_sampler("ralston")["order"] > 1.7  # measured up to 256 NFE: its error constant is small
    finally:
        sys.path.remove(str(EXAMPLE))
        for name in [m for m in sys.modules if m.startswith("zoo_example_plugin")]:
            del sys.modules[name]


def test_the_harness_refuses_budgets_below_min_nfe_and_overspending() -> None:
    registry = get_registry()
    law, data = registry.create("law", "heat"), TinyMixture()
    field = law.exact_field(data.exact)
    with pytest.raises(ZooError, match=r"sampler 'midpoint-test' needs at least 3 NFE per sample on law 'heat' "
                                       r"\(2 for its steps, 1 for its final heun step\)"):
        generate(law, field, Midpoint(), n=4, nfe=1, shape=(2,))
    assert generate(law, field, Midpoint(), n=4, nfe=3, shape=(2,)).nfe == 3  # one step and the final step
    assert generate(law, field, Midpoint(final="none"), n=4, nfe=3, shape=(2,)).nfe == 2
    with pytest.raises(ZooError, match="sampler 'no-minimum' spent 2 NFE per sample, over its budget of 1"):
        generate(law, field, NoMinimum(final="none"), n=4, nfe=1, shape=(2,))
    with pytest.raises(AssertionError, match=r"budget of 2 NFE .* evaluated the field 3 times.*raise min_nfe"):
        check_sampler(NoMinimum)
    with registered(Midpoint):  # a bench leaves out the budgets a sampler cannot take one step in
        assert _nfe_grid("midpoint-test", budget("smoke").replace(nfe=[1, 2, 4])) == [2, 4]


def run(capsys, *argv: str, plugins_dir: Path | None = None) -> tuple[int, str, str]:
    """`zoo ARGV` in this process, with a registry of its own (so --plugins-dir is read)."""
    saved = get_registry()
    set_registry(None)
    try:
        main([*(["--plugins-dir", str(plugins_dir)] if plugins_dir else []), *argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        set_registry(saved)
        import os
        os.environ.pop("ZOO_PLUGINS_DIR", None)
    out, err = capsys.readouterr()
    return code, out, err


BROKEN = {
    "bad_signature.py": """
from dataclasses import dataclass
from typing import ClassVar
import zoo
from zoo.contracts import Sampler

@dataclass(frozen=True)
class Bad(Sampler):
    name: ClassVar[str] = "bad-signature"

    def sample(self, x):
        return x

@zoo.hookimpl
def zoo_register_samplers(register):
    register(Bad)
""",
    "fails_import.py": "import zoo_no_such_dependency\n",
    "multi_line.py": "raise RuntimeError('first line\\nsecond line\\nthird line')\n",
    "typo_hook.py": "import zoo\n\n@zoo.hookimpl\ndef zoo_register_sampler(register):\n    pass\n",
    "extra_argument.py": "import zoo\n\n@zoo.hookimpl\ndef zoo_register_samplers(register, config):\n    pass\n",
}


def test_broken_plugins_are_one_line_and_unknown_names_point_to_them(capsys, tmp_path: Path) -> None:
    for name, code in BROKEN.items():
        (tmp_path / name).write_text(code)
    code, _, err = run(capsys, "plugins", plugins_dir=tmp_path)
    lines = {line.split(":", 1)[0].removeprefix("broken plugin "): line for line in err.splitlines()}
    assert code == 0 and len(lines) == len(BROKEN) == len(err.splitlines())  # one line each
    assert lines["bad_signature"].endswith("sampler 'bad-signature' breaks the Sampler contract: "
                                           "sample(self, x) cannot be called as sample(self, process, x, grid, noise)")
    assert lines["fails_import"].endswith("import failed: ModuleNotFoundError: No module named 'zoo_no_such_dependency'")
    assert lines["multi_line"].endswith("import failed: RuntimeError: first line ...")
    assert lines["typo_hook"].endswith("unknown hook 'zoo_register_sampler' (did you mean 'zoo_register_samplers'?)")
    assert lines["extra_argument"].endswith("hook zoo_register_samplers takes config, which it is not given "
                                            "(its only argument is `register`)")
    assert "zoo_plugins_dir" not in err  # no internal module names

    sample = ["sample", "--law", "heat", "--network", "exact", "--dataset", "gmm8", "--n", "4",
              "--out", str(tmp_path / "x.npz"), "--sampler"]
    code, _, err = run(capsys, *sample, "bad-signature", plugins_dir=tmp_path)
    assert code == 2 and err == ("zoo: sampler 'bad-signature' is not available: plugin 'bad_signature' is broken: "
                                 "sampler 'bad-signature' breaks the Sampler contract: sample(self, x) cannot be "
                                 "called as sample(self, process, x, grid, noise)\n")
    code, _, err = run(capsys, *sample, "fails_import", plugins_dir=tmp_path)
    assert code == 2 and "plugin 'fails_import' is broken: import failed: ModuleNotFoundError" in err
    code, _, err = run(capsys, *sample, "huen", plugins_dir=tmp_path)
    assert code == 2 and err.startswith("zoo: unknown sampler 'huen' (did you mean 'heun'?)")
    assert "broken plugins: bad_signature, extra_argument, fails_import, multi_line, typo_hook" in err


def test_did_you_mean_and_the_budget_hint(capsys) -> None:
    assert run(capsys, "bnech")[2] == ("zoo: no such command 'bnech' (did you mean 'bench'?) (commands: plugins, data, "
                                       "train, sample, tune, forward, evaluate, bench, report)\n")
    code, _, err = run(capsys, "bench", "--nfe", "10")
    assert code == 2 and "no such option --nfe: a bench takes nfe from --budget (smoke: 5,10;" in err
    assert "[overrides]" in err
    code, _, err = run(capsys, "bench", "--plugins", "heat,huen", "--out", "nowhere")
    assert code == 2 and "unknown plugin 'huen' (did you mean 'heun'?)" in err
    code, _, err = run(capsys, "sample", "--law", "heat", "--network", "exact", "--dataset", "gmm8", "--sampler",
                       "em:alpah=1", "--out", "x.npz")
    assert code == 2 and "unknown option 'alpah' (did you mean 'alpha'?)" in err


def test_zoo_plugins_shows_options_and_defaults(capsys) -> None:
    code, out, _ = run(capsys, "plugins")
    lines = out.splitlines()
    em = lines.index(next(line for line in lines if line.strip().startswith("em ")))
    assert lines[em + 1].split() == ["options:", "alpha=1.0,", "grid=geometric,", "final=auto,", "schedule=const"]
    assert "options: PATH (positional, required), test_fraction=0.1, seed=0" in out  # file:PATH
    code, out, _ = run(capsys, "plugins", "--json")
    rows = {(p["kind"], p["name"]): p for p in json.loads(out)["plugins"]}
    assert rows["sampler", "em"]["options"] == {"alpha": 1.0, "grid": "geometric", "final": "auto", "schedule": "const"}


def test_the_bench_estimate_follows_each_job_kind_and_does_not_swing() -> None:
    """A sweep of a costly training and many cheap sample runs of two kinds, on a machine 3x slower
    than the priors assume and with each kind off its prior by up to 2x: after every finished run
    the estimate stays within 3x of the time really left, where the mean time per run so far
    (what a plain progress bar shows) is off by more than 10x."""
    from zoo.progress import Eta, _prior, kind_and_size

    specs = [{"kind": "floors", "n": 500}]
    specs += [{"kind": "train", "law": "heat", "network": "mlp", "steps": 600, "batch_size": 512}]
    specs += [{"kind": "sample", "network": net, "n": 500, "nfe": nfe}
              for net in ("exact", "mlp") for nfe in (10, 20, 50) for _ in range(4)]
    bias = {"floors": 0.5, "train heat mlp": 2.0, "sample exact": 1.0, "sample mlp": 0.6}
    seconds = [3 * bias[k] * _prior(k) * size for k, size in map(kind_and_size, specs)]
    eta = Eta(specs, workers=1, startup=0.0)
    worst_ours = worst_mean = 1.0
    for i, spent in enumerate(seconds[:-1]):
        eta.finished(i, spent)
        left = sum(seconds[i + 1:])
        mean_per_run = sum(seconds[: i + 1]) / (i + 1) * (len(seconds) - i - 1)
        worst_ours = max(worst_ours, eta.remaining() / left, left / eta.remaining())
        worst_mean = max(worst_mean, mean_per_run / left, left / mean_per_run)
    assert worst_ours < 3 and worst_mean > 10, (worst_ours, worst_mean)


def test_zoo_forward_defaults_to_the_laws_particles_and_says_so(capsys, tmp_path: Path) -> None:
    import numpy as np

    code, _, err = run(capsys, "forward", "--law", "pme:m=2", "--dataset", "barenblatt:m=2:n_train=600",
                       "--t-end", "0.02", "--snapshots", "2", "--out", str(tmp_path / "flow.npz"))
    assert code == 0, err
    assert err.startswith("forward flow of pme (route blob): 500 particles (of 600 train points; --n sets it, the cost grows as n^2)")
    assert np.load(tmp_path / "flow.npz")["positions"].shape == (2, 500, 2)
