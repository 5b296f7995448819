"""Bespoke / learned 5-NFE solvers on gmm8 + heat (exact field): fit a handful of free parameters
on a SEARCH batch (prior draws of seed 1000), report the flow error on held-out prior draws of seed 0.

Flow error: RMS over n held-out draws of |sample - exact flow map of the same draw at t = 0| (rk45,
rtol = atol = 1e-9, T straight to 0, float64) -- as benchmarks/tuned_grids.py.

Solver family (data-prediction DPM-Solver++ on heat's VP path alpha = e^-t, sigma = sqrt(1 - e^-2t),
lambda = log(alpha / sigma); every D = process.data_prediction = 1 NFE):
  evaluation times e_0 = T > e_1 > ... > e_{M-1}; after each evaluation one exponential-integrator
  step  x <- (sigma'/sigma) * r_k * x + alpha' (1 - e^-h) (1 + g_k) (D_k + c_k h (D_k - D_{k-1}) / h_{k-1})
  (c_k = 0.5: DPM-Solver++ 2M; r_k = 1, g_k = 0 unless 'scale' is fitted), and then either
  * mode 'tmin': the last step goes to t_min = 1e-3 and the sample is x there (= dpmpp:final=none), or
  * mode 'land': the last evaluation's time e_{M-1} = t_end is free, and the sample is
    D_{M-1} + c_f (D_{M-1} - D_{M-2})  (c_f = 0: the k-diffusion / 'denoise' landing on D).
NFE = M in both modes.

    OMP_NUM_THREADS=1 python benchmarks/bespoke_solvers.py 5    # or 10; ~10 s a variant on one thread
Results and caches go to ./bespoke-out/. Measured, not built into zoo: benchmarks/bespoke_solvers.md.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

from zoo import tuning
from zoo.registry import get_registry
from zoo.sampling import generate, prior_samples
from zoo_samplers import RK45

torch.set_num_threads(1)
HERE = Path("bespoke-out")
HERE.mkdir(exist_ok=True)
reg = get_registry()
law = reg.create("law", "heat")
data = reg.create("dataset", "gmm8")
field = law.exact_field(data.exact)
process = law.reverse(field)
T, TMIN = law.T, law.t_min
N_HELD, N_SEARCH, SEARCH_SEED = 2000, 512, 1000


def flow_end(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    cache = HERE / f"end_seed{seed}_n{n}.pt"
    x = prior_samples(law, (2,), seed, range(n)).double()
    if cache.exists():
        return x, torch.load(cache)
    end = RK45(rtol=1e-9, atol=1e-9).sample(law.reverse(field), x, torch.tensor([T, 0.0], dtype=torch.float64), None)
    torch.save(end, cache)
    return x, end


def path(t: float):
    a = math.exp(-t)
    s = math.sqrt(-math.expm1(-2 * t))
    return a, s, math.log(a / s)


NFE_COUNT = [0]


def D(x, t):
    NFE_COUNT[0] += 1
    return process.data_prediction(x, t)


def solve(x, times, c=None, mode="tmin", cf=0.0, r=None, g=None):
    """times: the M evaluation times (decreasing, T first); c[k] for k = 1..M-1 the multistep
    coefficient (index k-1); r, g per step scale factors (len M in tmin mode, M-1 in land mode)."""
    M = len(times)
    prev_d = prev_h = None
    for k in range(M):
        t = times[k]
        a, s, lam = path(t)
        d = D(x, t)
        if mode == "land" and k == M - 1:
            return d if prev_d is None else d + cf * (d - prev_d)
        t_next = times[k + 1] if k + 1 < M else TMIN
        a1, s1, lam1 = path(t_next)
        h = lam1 - lam
        phi = -math.expm1(-h)
        m = d
        if prev_d is not None:
            ck = 0.5 if c is None else c[k - 1]
            m = d + ck * h * (d - prev_d) / prev_h
        rk = 1.0 if r is None else r[k]
        gk = 1.0 if g is None else g[k]
        x = (s1 / s) * rk * x + a1 * phi * gk * m
        prev_d, prev_h = d, h
    return x


def grid_tmin(z, M):
    """M evaluation times: T, then M - 1 more, the M steps to t_min with log-shares softmax([z, 0])."""
    logits = np.append(np.asarray(z, float), 0.0)
    sh = np.exp(logits - logits.max()); sh /= sh.sum()
    logs = math.log(T) - np.concatenate([[0.0], np.cumsum(sh)]) * (math.log(T) - math.log(TMIN))
    return [float(v) for v in np.exp(logs)[:M]]


def grid_land(z, u, M):
    """M evaluation times from T to t_end = exp(u); M-1 steps, log-shares softmax([z, 0])."""
    t_end = min(math.exp(u), 0.9 * T)
    logits = np.append(np.asarray(z, float), 0.0)
    sh = np.exp(logits - logits.max()); sh /= sh.sum()
    logs = math.log(T) - np.concatenate([[0.0], np.cumsum(sh)]) * (math.log(T) - math.log(t_end))
    return [float(v) for v in np.exp(logs)]


def rms(y, end):
    return float((y - end).square().sum(1).mean().sqrt())


class Variant:
    """A named parametrisation: unpack(p) -> kwargs of solve; p0 the start."""

    def __init__(self, name, M, mode, fit_c=False, fit_cf=False, fit_scale=False, fit_grid=True):
        self.name, self.M, self.mode = name, M, mode
        self.fit_c, self.fit_cf, self.fit_scale, self.fit_grid = fit_c, fit_cf, fit_scale, fit_grid
        nsteps = M if mode == "tmin" else M - 1
        self.nz = (nsteps - 1) if fit_grid else 0
        self.nu = 1 if (mode == "land" and fit_grid) else 0
        self.nc = (nsteps - 1) if fit_c else 0
        self.ncf = 1 if fit_cf else 0
        self.ns = nsteps if fit_scale else 0
        self.dim = self.nz + self.nu + self.nc + self.ncf + 2 * self.ns
        self.nsteps = nsteps

    def start(self, z0=None, u0=None):
        p = [np.zeros(self.nz) if z0 is None else np.asarray(z0, float)]
        if self.nu:
            p.append([math.log(2e-2) if u0 is None else u0])
        p += [np.full(self.nc, 0.5), np.zeros(self.ncf), np.zeros(2 * self.ns)]
        return np.concatenate([np.asarray(q, float).ravel() for q in p])

    def kwargs(self, p):
        i = 0
        z = p[i:i + self.nz]; i += self.nz
        if self.mode == "tmin":
            times = grid_tmin(z, self.M)
        else:
            u = p[i] if self.nu else math.log(2e-2); i += self.nu
            times = grid_land(z, u, self.M)
        kw = {"times": times, "mode": self.mode}
        if self.nc:
            kw["c"] = list(p[i:i + self.nc]); i += self.nc
        if self.ncf:
            kw["cf"] = float(p[i]); i += 1
        if self.ns:
            kw["r"] = list(1.0 + p[i:i + self.ns]); i += self.ns
            kw["g"] = list(1.0 + p[i:i + self.ns]); i += self.ns
        return kw


def fit(var: Variant, xs, ends, evals=6000, p0=None):
    count = [0]

    def f(p):
        count[0] += 1
        try:
            y = solve(xs, **var.kwargs(p))
        except (ValueError, OverflowError):
            return 1e6
        v = rms(y, ends)
        return v if math.isfinite(v) else 1e6

    p = var.start() if p0 is None else np.asarray(p0, float)
    best = f(p)
    t0 = time.perf_counter()
    for rnd in range(20):  # alternate Powell and Nelder-Mead restarts while it gains
        if count[0] >= evals:
            break
        method = "Powell" if rnd % 2 == 0 else "Nelder-Mead"
        opts = {"maxfev": evals - count[0], "xtol": 1e-6, "ftol": 1e-10} if method == "Powell" else \
            {"maxfev": evals - count[0], "xatol": 1e-6, "fatol": 1e-10, "adaptive": True}
        res = minimize(f, p, method=method, options=opts)
        gain = best - res.fun
        if res.fun < best:
            p, best = res.x, float(res.fun)
        if rnd > 0 and gain <= 1e-4 * best:
            break
    return p, best, count[0], time.perf_counter() - t0


def main():
    which = sys.argv[1:] or ["5", "10"]
    xh, endh = flow_end(0, N_HELD)
    xs, ends = flow_end(SEARCH_SEED, N_SEARCH)
    rows, store = [], {}

    for nfe in [int(v) for v in which]:
        # baselines through zoo itself
        sampler = reg.create("sampler", "dpmpp:final=none")
        geo = generate(law, field, sampler, n=N_HELD, nfe=nfe, shape=(2,), seed=0).samples.double()
        t0 = time.perf_counter()
        entry = tuning.search(law, field, sampler, nfe, (2,))
        tz = time.perf_counter() - t0
        tuned = generate(law, field, sampler, n=N_HELD, nfe=nfe, shape=(2,), seed=0, times=entry["times"]).samples.double()
        rows.append((nfe, "zoo dpmpp:final=none, geometric", 0, "-", float("nan"), rms(geo, endh)))
        rows.append((nfe, "zoo dpmpp:final=none, zoo tune (NM, ref to t_min, n=256)", nfe - 1,
                     f"{entry['search']['evaluations']} ev / {tz:.0f} s", entry["search"]["rms"], rms(tuned, endh)))
        # check: my solver reproduces zoo's dpmpp:final=none on the geometric grid
        mine = solve(xh, grid_tmin(np.zeros(nfe - 1), nfe))
        print(f"NFE {nfe}: my 2M on geometric grid {rms(mine, endh):.4g} vs zoo {rms(geo, endh):.4g} "
              f"(max diff {float((mine - geo).abs().max()):.2g})", flush=True)
        ztuned = tuning._logits(law, torch.tensor(entry["times"], dtype=torch.float64))

        variants = [
            (Variant("2M, grid (target t=0)", nfe, "tmin"), ztuned, None),
            (Variant("2M, grid + per-step c_k", nfe, "tmin", fit_c=True), ztuned, None),
            (Variant("2M + land on D at free t_end, grid", nfe, "land"), None, None),
            (Variant("2M + land, grid + c_k", nfe, "land", fit_c=True), None, None),
            (Variant("2M + land + c_f extrap, grid + c_k", nfe, "land", fit_c=True, fit_cf=True), None, None),
            (Variant("2M + land + c_f, grid + c_k + scales r_k,g_k", nfe, "land", fit_c=True, fit_cf=True,
                     fit_scale=True), None, None),
            (Variant("2M to t_min, grid + c_k + scales r_k,g_k", nfe, "tmin", fit_c=True, fit_scale=True), ztuned, None),
        ]
        prev = {}
        for var, z0, _ in variants:
            p0 = var.start(z0=z0 if z0 is not None else None)
            # warm start from the nested simpler variant where possible
            key = (var.mode, var.fit_c, var.fit_cf)
            for (mode, fc, fcf), (pv, vv) in prev.items():
                if mode == var.mode and var.dim > vv.dim:
                    kw = vv.kwargs(pv)
                    q = var.start()
                    q[:vv.nz + vv.nu] = pv[:vv.nz + vv.nu]
                    if vv.nc and var.nc:
                        q[var.nz + var.nu:var.nz + var.nu + var.nc] = pv[vv.nz + vv.nu:vv.nz + vv.nu + vv.nc]
                    if vv.ncf and var.ncf:
                        q[var.nz + var.nu + var.nc] = pv[vv.nz + vv.nu + vv.nc]
                    p0 = q
            NFE_COUNT[0] = 0
            solve(xh[:3], **var.kwargs(p0))
            assert NFE_COUNT[0] == nfe, (var.name, NFE_COUNT[0])
            p, s_err, ev, sec = fit(var, xs, ends, evals=4000 if nfe == 5 else 3000, p0=p0)
            prev[key] = (p, var)
            kw = var.kwargs(p)
            NFE_COUNT[0] = 0
            held = rms(solve(xh, **kw), endh)
            assert NFE_COUNT[0] == nfe
            rows.append((nfe, var.name, var.dim, f"{ev} ev / {sec:.0f} s", s_err, held))
            store[f"{nfe} {var.name}"] = {k: (v if not isinstance(v, list) else [float(q) for q in v])
                                          for k, v in kw.items()} | {"search": s_err, "held": held}
            print(f"| {nfe} | {var.name} | {var.dim} | {ev} ev / {sec:.0f} s | {s_err:.4g} | {held:.4g} |", flush=True)
            print("   ", json.dumps(store[f"{nfe} {var.name}"]), flush=True)
            (HERE / f"params_nfe{'_'.join(which)}.json").write_text(json.dumps(store, indent=1))

    print("\n| NFE | variant | free params | search cost | search RMS (seed 1000, n=512) | held-out flow error (seed 0, n=2000) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.4g} | {r[5]:.4g} |")


if __name__ == "__main__":
    main()
