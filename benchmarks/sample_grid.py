"""Side-by-side sample grids of chosen leaderboard rows (image data sets), one panel per row.

    python benchmarks/sample_grid.py --out benchmarks/pme_digits.png \
        "bench-digits|heat:|unet|em:|1|50" "bench-digits|route=source|unet|heun|0|19"

Each panel is "DIR|LAW|NETWORK|SAMPLER|ALPHA|NFE": the first ok row of DIR/results.json whose law,
network and sampler SPECs contain those strings, with that alpha and NFE budget; it shows the
first 64 of the row's samples (DIR/runs/RUN/samples.npz) under the row's label and primary metric.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def find_row(panel: str) -> tuple[dict, Path]:
    folder, law, network, sampler, alpha, nfe = panel.split("|")
    for row in json.loads((Path(folder) / "results.json").read_text()):
        if (row["status"] == "ok" and law in row["law"] and network in row["network"] and sampler in row["sampler"]
                and math.isclose(row["alpha"], float(alpha)) and row["nfe_budget"] == int(nfe)):
            return row, Path(folder) / "runs" / row["run"] / "samples.npz"
    raise SystemExit(f"no ok row matches {panel!r}")


def tile(samples: np.ndarray, side: int = 8) -> np.ndarray:
    """(n, 1, h, w) -> one image of the first side^2 samples, each framed by a one-pixel border
    at the data's background value (the minimum), so that neighbouring samples do not merge."""
    x = samples[: side * side, 0]
    x = np.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=float(np.percentile(x, 1)))
    h, w = x.shape[1:]
    return x.reshape(side, side, h, w).transpose(0, 2, 1, 3).reshape(side * h, side * w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("panels", nargs="+", help="DIR|LAW|NETWORK|SAMPLER|ALPHA|NFE")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    fig, axes = plt.subplots(1, len(args.panels), figsize=(2.1 * len(args.panels), 2.4), squeeze=False)
    for ax, panel in zip(axes[0], args.panels):
        row, path = find_row(panel)
        ax.imshow(tile(np.load(path)["samples"]), cmap="gray_r")
        law = row["law"].split(":")[0] + "".join(f" {o}" for o in row["law"].split(":")[1:] if o.startswith(("route=", "target=")) and not o.endswith("=none"))
        sampler = row["sampler"].split(":")[0] + (f" a={row['alpha']:g}" if row["alpha"] else "")
        ax.set_title(f"{law}\n{sampler}, {row['nfe']} NFE, FID {row['metrics']['fid']:.3g}", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
