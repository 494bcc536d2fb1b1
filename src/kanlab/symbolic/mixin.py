"""The symbolic API of :class:`kanlab.KAN` (pykan's names): fix, suggest, auto, formula.

Fits run on the data of the last ``fit()`` (or an ``x`` you pass): each edge's input values and
its numeric output on those samples. ``auto_symbolic`` fits every edge of every layer against every
candidate function in one batched call of :func:`kanlab.symbolic.fit.fit_functions`.
"""
from __future__ import annotations

import logging
import math

import torch

from .fit import fit_functions, score_candidates
from .library import SYMBOLIC_LIB, default_lib, get_symbolic

log = logging.getLogger("kanlab")

_MODES = {"n": (1.0, 0.0), "s": (0.0, 1.0), "sn": (1.0, 1.0), "ns": (1.0, 1.0)}


class SymbolicMixin:
    """Methods of KAN for symbolic edges and formulas."""

    # ------------------------------------------------------------------ checks
    def _check_edge(self, l: int, i: int, j: int) -> None:
        if not isinstance(l, int) or not 0 <= l < self.depth:
            raise ValueError(f"layer index l={l!r} out of range: the model has {self.depth} layers")
        n_in, n_out = self.width_in[l], self.width_out[l + 1]
        if not isinstance(i, int) or not 0 <= i < n_in:
            raise ValueError(f"input index i={i!r} out of range for layer {l} (it has {n_in} inputs)")
        if not isinstance(j, int) or not 0 <= j < n_out:
            raise ValueError(f"output index j={j!r} out of range for layer {l} (it has {n_out} outputs)")

    def _fit_data(self, x):
        return self.layer_inputs(self._data(x, "symbolic fitting"))

    @staticmethod
    def _lib(lib) -> list[str]:
        if lib is None:
            return default_lib()
        if isinstance(lib, str):
            lib = [lib]
        names = list(lib)
        for n in names:
            get_symbolic(n)
        if not names:
            raise ValueError("lib must name at least one function")
        return names

    @torch.no_grad()
    def _edge_xy(self, edges, acts):
        """Inputs and unmasked numeric outputs (E, N) of the edges [(l, i, j), ...]."""
        xs, ys = [], []
        by_layer: dict[int, list[int]] = {}
        for e, (l, _, _) in enumerate(edges):
            by_layer.setdefault(l, []).append(e)
        order = []
        for l, ids in by_layer.items():
            layer = self.act_fun[l]
            dev = layer.grid.device
            ii = torch.tensor([edges[e][1] for e in ids], device=dev)
            jj = torch.tensor([edges[e][2] for e in ids], device=dev)
            xs.append(acts[l][:, ii])
            ys.append(layer.edge_values(acts[l], ii, jj, masked=False))
            order += ids
        X = torch.cat(xs, 1).t()
        Y = torch.cat(ys, 1).t()
        inv = torch.empty(len(order), dtype=torch.long)
        inv[torch.tensor(order)] = torch.arange(len(order))
        return X[inv.to(X.device)], Y[inv.to(Y.device)]

    # --------------------------------------------------------------- per edge
    def set_mode(self, l: int, i: int, j: int, mode: str, mask_n: float | None = None) -> None:
        """Edge i -> j of layer l: ``"n"`` numeric, ``"s"`` symbolic, ``"sn"`` both."""
        self._check_edge(l, i, j)
        if mode not in _MODES:
            raise ValueError(f"mode must be 'n', 's' or 'sn', got {mode!r}")
        n, s = _MODES[mode]
        if mask_n is not None:
            n = float(mask_n)
        with torch.no_grad():
            self.act_fun[l].mask[i, j] = n
            self.symbolic_fun[l].mask[j, i] = s

    def fix_symbolic(self, l: int, i: int, j: int, fun_name: str, fit_params: bool = True,
                     a_range=(-10, 10), b_range=(-10, 10), verbose: bool = True,
                     random: bool = False, log_history: bool = True, x=None,
                     fit_params_bool: bool | None = None):
        """Make edge i -> j of layer l symbolic with function ``fun_name``.

        With ``fit_params`` (pykan: ``fit_params_bool``) the a, b, c, d of ``c*f(a*x+b)+d`` are
        fitted to the edge's numeric curve on the data (``x`` or the training inputs of the last
        fit) and the fit's R2 is returned; otherwise a, b, c, d = 1, 0, 1, 0 and None is returned.
        """
        if fit_params_bool is not None:
            fit_params = bool(fit_params_bool)
        self._check_edge(l, i, j)
        get_symbolic(fun_name)
        sym = self.symbolic_fun[l]
        if not fit_params:
            sym.set_edge(j, i, fun_name, [1.0, 0.0, 1.0, 0.0])
            self.set_mode(l, i, j, "s")
            return None
        acts = self._fit_data(x)
        X, Y = self._edge_xy([(l, i, j)], acts)
        res = fit_functions(X, Y, [fun_name], a_range=a_range, b_range=b_range)
        r2 = float(res.r2[0, 0])
        sym.set_edge(j, i, fun_name, res.params[0, 0].tolist())
        self.set_mode(l, i, j, "s")
        if verbose:
            log.info("fixing (%d,%d,%d) with %s, r2=%.6g", l, i, j, fun_name, r2)
        return r2

    def unfix_symbolic(self, l: int, i: int, j: int, log_history: bool = True) -> None:
        """Return edge i -> j of layer l to its numeric form."""
        self._check_edge(l, i, j)
        self.set_mode(l, i, j, "n")
        self.symbolic_fun[l].set_edge(j, i, "0", [0.0, 0.0, 0.0, 0.0])

    def suggest_symbolic(self, l: int, i: int, j: int, a_range=(-10, 10), b_range=(-10, 10),
                         lib=None, topk: int = 5, verbose: bool = True, weight_simple: float = 0.8,
                         x=None, return_table: bool = False, **pykan_only):
        """Rank candidate functions for edge i -> j of layer l by fit and simplicity.

        Score (lower is better): ``log10(1 - r2) + weight_simple * complexity``. Returns pykan's
        ``(best_name, best_fun, best_r2, best_complexity)``, or with ``return_table=True`` the
        top ``topk`` rows as dicts (name, r2, complexity, score, affine). ``verbose`` logs the table.
        """
        self._check_edge(l, i, j)
        names = self._lib(lib)
        acts = self._fit_data(x)
        X, Y = self._edge_xy([(l, i, j)], acts)
        res = fit_functions(X, Y, names, a_range=a_range, b_range=b_range)
        comp = torch.tensor([SYMBOLIC_LIB[n].complexity for n in names], dtype=torch.float64)
        score = score_candidates(res.r2[0], comp, weight_simple, names)
        order = torch.argsort(score, stable=True).tolist()[: max(1, int(topk))]
        rows = [dict(name=names[q], r2=float(res.r2[0, q]), complexity=SYMBOLIC_LIB[names[q]].complexity,
                     score=float(score[q]), affine=res.params[0, q].tolist()) for q in order]
        if verbose:
            log.info("suggestions for edge (%d,%d,%d):\n%s", l, i, j, "\n".join(
                f"  {r['name']:>10}  r2={r['r2']:.8f}  complexity={r['complexity']}  score={r['score']:.3f}"
                for r in rows))
        if return_table:
            return rows
        best = rows[0]
        return best["name"], SYMBOLIC_LIB[best["name"]].torch_fn, best["r2"], best["complexity"]

    def auto_symbolic(self, a_range=(-10, 10), b_range=(-10, 10), lib=None, verbose: int = 1,
                      weight_simple: float = 0.8, r2_threshold: float = 0.0, x=None) -> dict:
        """Fix every active numeric edge to its best-scoring function (see suggest_symbolic).

        All edges of all layers and all candidates are fitted in one batched call. Edges already
        symbolic are kept; masked edges stay off; an edge whose output is constant on the data
        becomes '0' with that constant as d; an edge whose best R2 is below ``r2_threshold``
        stays numeric. Returns ``{(l, i, j): (name, r2)}`` for the edges it fixed.
        """
        names = self._lib(lib)
        edges = []
        for l in range(self.depth):
            nm = self.act_fun[l].mask
            sm = self.symbolic_fun[l].mask
            for i in range(self.width_in[l]):
                for j in range(self.width_out[l + 1]):
                    if nm[i, j] != 0:
                        edges.append((l, i, j))
                    elif sm[j, i] != 0 and verbose:
                        log.info("skipping (%d,%d,%d): already symbolic", l, i, j)
        fixed: dict = {}
        if not edges:
            return fixed
        acts = self._fit_data(x)
        if acts[0].shape[0] < 2:
            raise ValueError(f"auto_symbolic needs at least 2 samples to fit edges, got "
                             f"{acts[0].shape[0]}")
        X, Y = self._edge_xy(edges, acts)
        std, mean = Y.std(-1), Y.mean(-1)
        const = std <= 1e-7 * mean.abs().clamp_min(1.0)
        res = fit_functions(X, Y, names, a_range=a_range, b_range=b_range)
        comp = torch.tensor([SYMBOLIC_LIB[n].complexity for n in names], dtype=torch.float64)
        score = score_candidates(res.r2, comp, weight_simple, names)
        best = torch.argmin(score, dim=1)  # first minimum: library order breaks ties
        for e, (l, i, j) in enumerate(edges):
            sym = self.symbolic_fun[l]
            if bool(const[e]):
                sym.set_edge(j, i, "0", [0.0, 0.0, 0.0, float(mean[e])])
                self.set_mode(l, i, j, "s")
                fixed[(l, i, j)] = ("0", 1.0)
                continue
            q = int(best[e])
            r2 = float(res.r2[e, q])
            if not math.isfinite(r2) or r2 < r2_threshold:
                log.info("(%d,%d,%d) stays numeric: best fit %s has r2=%.4g < %.4g", l, i, j,
                         names[q], r2, r2_threshold)
                continue
            sym.set_edge(j, i, names[q], res.params[e, q].tolist())
            self.set_mode(l, i, j, "s")
            fixed[(l, i, j)] = (names[q], r2)
            if verbose:
                log.info("fixing (%d,%d,%d) with %s, r2=%.8f, c=%s", l, i, j, names[q], r2,
                         SYMBOLIC_LIB[names[q]].complexity)
        return fixed

    # ---------------------------------------------------------------- formula
    def symbolic_formula(self, var=None, normalizer=None, output_normalizer=None,
                         simplify: bool = True, n_digits: int | None = None):
        """The network as sympy: ``([expression per output], input symbols)``.

        Every active edge must be symbolic (run auto_symbolic or fix_symbolic first). Biases and
        products are included. ``normalizer=(mean, std)`` says the model was trained on
        ``(x - mean) / std`` and ``output_normalizer=(mean, std)`` on ``(y - mean) / std``
        (pykan's arguments): the formula is then written in the raw variables. ``n_digits``
        rounds the constants (see :func:`ex_round`).
        """
        from .formula import network_formula

        return network_formula(self, var=var, simplify=simplify, n_digits=n_digits,
                               normalizer=normalizer, output_normalizer=output_normalizer)
