"""`zoo forward`: the blob flow from the command line, and its one-line errors."""
import numpy as np
import pytest

from zoo.cli import main



def run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


def test_forward_writes_times_and_positions(tmp_path, capsys):
    out = tmp_path / "flow.npz"
    try:
        main(["forward", "--law", "pme:m=2", "--dataset", "barenblatt:dim=3:m=2:n_train=120", "--n", "80",
              "--t-end", "0.2", "--snapshots", "3", "--out", str(out)])
    except SystemExit as exc:  # click may exit 0 after a command in non-standalone mode
        assert exc.code in (0, None)
    z = np.load(out)
    assert z["times"].tolist() == pytest.approx([0.0, 0.1, 0.2])
    assert z["positions"].shape == (3, 80, 3) and z["positions"].dtype == np.float32
    assert np.isfinite(z["positions"]).all()
    assert z["widths"].shape == (3,) and 0 < z["widths"][0] < z["widths"][2]  # the width follows the spreading cloud
    # barenblatt h0 = 0.5 < 1 expands towards the stationary state
    spread = (z["positions"] ** 2).sum(-1).mean(-1)
    assert spread[0] < spread[1] < spread[2]


@pytest.mark.parametrize("args, message", [
    (["--law", "pme:m=1"], "m must be a number > 1"),
    (["--law", "custom:F=-rho**2"], "not strictly convex"),
    (["--law", "custom:F=rho**2+y"], "unknown name 'y'"),
    (["--law", "pme", "--n", "10000"], "more than"),
    (["--law", "pme", "--t-end", "-1"], "--t-end"),
])
def test_forward_bad_input_is_one_line(tmp_path, capsys, args, message):
    code, err = run(["forward", "--dataset", "barenblatt:n_train=50", "--out", str(tmp_path / "x.npz"), *args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: ") and message in lines[0]
