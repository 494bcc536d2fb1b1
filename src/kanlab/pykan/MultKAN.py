"""pykan's ``MultKAN``/``KAN``: kanlab's model with pykan's habits where scripts rely on them.

* ``forward`` remembers its last input (a reference to the tensor, not activations), so
  ``plot``, ``fix_symbolic``, ``suggest_symbolic`` and ``auto_symbolic`` work after a plain
  ``model(x)`` or a custom training loop;
* ``acts``, ``spline_preacts``, ``spline_postacts`` and ``cache_data`` are computed from that
  input when read;
* a version history (``rewind``, ``checkout``, ``history``, ``saveckpt``/``loadckpt``) kept in
  memory, written to disk only into a ``ckpt_path`` the user names;
* ``fit(save_fig=True, img_folder=...)`` draws frames into the folder the user passes;
* pykan's printed output of ``fix_symbolic``, ``suggest_symbolic`` and ``auto_symbolic``.
"""
from __future__ import annotations

import functools

import numpy as _np
import torch as _torch

from ..model import KAN as _KAN
from ._history import History
from ._names import *  # noqa: F401,F403  (what pykan's module namespace carries)
from .KANLayer import KANLayer  # noqa: F401
from .LBFGS import *  # noqa: F401,F403
from .Symbolic_KANLayer import Symbolic_KANLayer  # noqa: F401
from .hypothesis import plot_tree  # noqa: F401
from .spline import curve2coef  # noqa: F401
from .utils import SYMBOLIC_LIB  # noqa: F401


def _logged(name):
    """Wrap kanlab's method ``name`` so the outermost call records a history version."""
    def wrap(fn):
        @functools.wraps(fn)
        def method(self, *args, **kwargs):
            want = kwargs.get("log_history", True)
            outer = self._log_depth == 0
            if outer and self.auto_save:
                self._ensure_initial()
            self._log_depth += 1
            try:
                out = fn(self, *args, **kwargs)
            finally:
                self._log_depth -= 1
            if outer and want and self.auto_save:
                target = out if isinstance(out, MultKAN) and out is not self else self
                if target is not self:
                    self._adopt(target)
                target.log_history(name)
            return out
        return method
    return wrap


class MultKAN(_KAN):
    """kanlab's KAN under pykan's name, signature and habits (see the module docstring)."""

    def __init__(self, width=None, grid=3, k=3, mult_arity=2, noise_scale=0.3,
                 scale_base_mu=0.0, scale_base_sigma=1.0, base_fun="silu", symbolic_enabled=True,
                 affine_trainable=False, grid_eps=0.02, grid_range=(-1, 1), sp_trainable=True,
                 sb_trainable=True, seed=1, save_act=True, sparse_init=False, auto_save=True,
                 first_init=True, ckpt_path=None, state_id=0, round=0, device="cpu", **kwargs):
        # pykan's affine_trainable freezes its node scales; kanlab's symbolic affines always
        # train, as pykan's do, and kanlab's node biases are trainable parameters.
        super().__init__(width=width, grid=grid, k=k, mult_arity=mult_arity,
                         noise_scale=noise_scale, scale_base_mu=scale_base_mu,
                         scale_base_sigma=scale_base_sigma, base_fun=base_fun,
                         symbolic_enabled=symbolic_enabled, grid_eps=grid_eps,
                         grid_range=grid_range, sp_trainable=sp_trainable,
                         sb_trainable=sb_trainable, seed=seed, save_act=save_act,
                         sparse_init=sparse_init, device=device, **kwargs)
        self.auto_save = bool(auto_save)
        self.ckpt_path = ckpt_path
        self.state_id = int(state_id)
        self.round = int(round)
        self._log_depth = 0
        self._history = History(ckpt_path) if self.auto_save else None

    # ------------------------------------------------------------ remembered input
    def forward(self, x, singularity_avoiding=False, y_th=10.0):
        """(batch, n_in) -> (batch, n_out); remembers ``x`` for later fits and plots."""
        if isinstance(x, _torch.Tensor):
            self._cache_x = x.detach()
        return super().forward(x)

    @property
    def cache_data(self):
        return self._cache_x

    @cache_data.setter
    def cache_data(self, x):
        self._cache_x = None if x is None else _torch.as_tensor(x).detach()

    def _edge_tensors(self):
        x = self._data(None, "this attribute")
        with _torch.no_grad():
            ins = self.layer_inputs(x)
            acts = self.activations(x)
        return ins, acts

    @property
    def acts(self):
        """Inputs of every layer plus the output, on the remembered input."""
        return self.layer_inputs(self._data(None, "acts"))

    @property
    def spline_preacts(self):
        """Per layer (batch, out, in): the input each edge sees (pykan's layout)."""
        ins = self.acts
        return [ins[l][:, None, :].expand(-1, self.width_out[l + 1], -1)
                for l in range(self.depth)]

    @property
    def spline_postacts(self):
        """Per layer (batch, out, in): each edge's activation (pykan's layout)."""
        with _torch.no_grad():
            acts = self.activations(self._data(None, "spline_postacts"))
        return [a.permute(0, 2, 1) for a in acts]

    def get_act(self, x=None):
        """pykan: the activations of ``x`` (or the remembered input); ``x`` is remembered."""
        x = self._data(x, "get_act()")
        self.cache_data = x
        return super().get_act(x)

    def get_fun(self, l, i, j):
        """The sorted inputs and outputs of edge (l, i, j) on the remembered input, plotted."""
        self._check_edge(l, i, j)
        ins, acts = self._edge_tensors()
        x = ins[l][:, i].cpu().numpy()
        y = acts[l][:, i, j].cpu().numpy()
        order = _np.argsort(x)
        plt.figure(figsize=(3, 3))
        plt.plot(x[order], y[order], marker="o")
        return x[order], y[order]

    def get_range(self, l, i, j, verbose=True):
        """Input and output range of edge (l, i, j) on the remembered input."""
        self._check_edge(l, i, j)
        ins, acts = self._edge_tensors()
        x, y = ins[l][:, i], acts[l][:, i, j]
        out = tuple(t.cpu().numpy() for t in (x.min(), x.max(), y.min(), y.max()))
        if verbose:
            print("x range: [%.2f , %.2f ]" % (out[0], out[1]))
            print("y range: [%.2f , %.2f ]" % (out[2], out[3]))
        return out

    # ------------------------------------------------------------ history
    def _ensure_initial(self):
        if self._history is not None and not self._history.versions:
            self._history.note(f"### Round {self.round} ###")
            self._history.store(f"{self.round}.{self.state_id}", self)

    def _adopt(self, child):
        child._history, child.auto_save, child.ckpt_path = self._history, self.auto_save, self.ckpt_path
        child.round, child.state_id = self.round, self.state_id

    def log_history(self, method_name):
        """Record the current state as the next version, ``round.state_id + 1``."""
        if not self.auto_save:
            return
        if self._history is None:
            self._history = History(self.ckpt_path)
        old = f"{self.round}.{self.state_id}"
        self.state_id += 1
        new = f"{self.round}.{self.state_id}"
        self._history.note(f"{old} => {method_name} => {new}")
        self._history.store(new, self)

    def checkout(self, model_id):
        """The model as it was at version ``model_id`` ('round.state'); history unchanged."""
        self._need_history()
        return self._history.get(model_id)

    def rewind(self, model_id):
        """Go back to version ``model_id``; it continues as ``{round + 1}.{state}``."""
        self._need_history()
        old = self._history.get(model_id)
        self.round += 1
        self.state_id = int(str(model_id).split(".")[-1])
        self._adopt(old)
        self._history.note(f"### Round {self.round} ###")
        self._history.store(f"{self.round}.{self.state_id}", old)
        return old

    def _need_history(self):
        if not self.auto_save or self._history is None:
            raise ValueError("this model keeps no history: create it with auto_save=True")
        self._ensure_initial()

    def history(self, k="all"):
        """Print the last ``k`` lines of the history log (all by default)."""
        self._need_history()
        lines = self._history.lines if k == "all" else self._history.lines[-int(k):]
        for line in lines:
            print(line)

    def saveckpt(self, path="model"):
        """Save the model to the file ``path`` (kanlab's format; load with ``loadckpt``)."""
        self.save(path)

    @staticmethod
    def loadckpt(path="model"):
        """Load a model written by ``saveckpt``."""
        return MultKAN.load(path)

    # ------------------------------------------------------------ pykan's printed output
    @_logged("fix_symbolic")
    def fix_symbolic(self, l, i, j, fun_name, fit_params_bool=True, a_range=(-10, 10),
                     b_range=(-10, 10), verbose=True, random=False, log_history=True, x=None):
        r2 = super().fix_symbolic(l, i, j, fun_name, fit_params=fit_params_bool, a_range=a_range,
                                  b_range=b_range, verbose=False, x=x)
        if verbose and r2 is not None:
            print(f"r2 is {r2}")
            if r2 < 0.8:
                print("r2 is not very high, please double check if you are choosing the "
                      "correct symbolic function.")
        return r2

    def suggest_symbolic(self, l, i, j, a_range=(-10, 10), b_range=(-10, 10), lib=None, topk=5,
                         verbose=True, weight_simple=0.8, **kwargs):
        rows = super().suggest_symbolic(l, i, j, a_range=a_range, b_range=b_range, lib=lib,
                                        topk=topk, verbose=False, weight_simple=weight_simple,
                                        return_table=True, **kwargs)
        if verbose:
            print(f"{'function':>10} {'fitting r2':>12} {'r2 loss':>10} {'complexity':>10} "
                  f"{'total loss':>10}")
            for r in rows:
                loss = float(_np.log2(1 + 1e-5 - min(r["r2"], 1.0)))
                print(f"{r['name']:>10} {r['r2']:12.6f} {loss:10.3f} {r['complexity']:10d} "
                      f"{r['score']:10.3f}")
        best = rows[0]
        return best["name"], SYMBOLIC_LIB[best["name"]].torch_fn, best["r2"], best["complexity"]

    @_logged("auto_symbolic")
    def auto_symbolic(self, a_range=(-10, 10), b_range=(-10, 10), lib=None, verbose=1,
                      weight_simple=0.8, r2_threshold=0.0, x=None):
        fixed = super().auto_symbolic(a_range=a_range, b_range=b_range, lib=lib, verbose=0,
                                      weight_simple=weight_simple, r2_threshold=r2_threshold, x=x)
        if verbose:
            for (l, i, j), (name, r2) in fixed.items():
                c = SYMBOLIC_LIB[name].complexity if name in SYMBOLIC_LIB else 0
                print(f"fixing ({l},{i},{j}) with {name}, r2={r2:.12g}, c={c}")
        return fixed

    def unfix_symbolic_all(self, log_history=True):
        for l in range(self.depth):
            for i in range(self.width_in[l]):
                for j in range(self.width_out[l + 1]):
                    super().unfix_symbolic(l, i, j)
        if log_history:
            self.log_history("unfix_symbolic_all")

    def symbolic_formula(self, var=None, normalizer=None, output_normalizer=None,
                         simplify=True, n_digits=None):
        """pykan's behaviour: numeric edges count as 0 in the formula (pykan drops them
        silently; here a warning names them)."""
        import warnings

        from ..symbolic.formula import network_formula, numeric_edges

        left = numeric_edges(self)
        if left:
            warnings.warn(f"symbolic_formula: {len(left)} edge(s) are still numeric and count as "
                          f"0 in the formula, as in pykan: {left[:6]}", stacklevel=2)
        return network_formula(self, var=var, simplify=simplify, n_digits=n_digits,
                               normalizer=normalizer, output_normalizer=output_normalizer,
                               numeric="zero")

    # ------------------------------------------------------------ training
    @_logged("fit")
    def fit(self, dataset, opt="LBFGS", steps=100, log=1, lamb=0.0, save_fig=False,
            in_vars=None, out_vars=None, beta=3, save_fig_freq=1, img_folder=None,
            singularity_avoiding=False, y_th=1000.0, callback=None, **kwargs):
        """kanlab's fit; ``save_fig`` draws a frame every ``save_fig_freq`` steps into
        ``img_folder`` (required: kanlab writes nowhere the user did not name)."""
        if save_fig:
            callback = self._frame_writer(img_folder, save_fig_freq, in_vars, out_vars, beta,
                                          callback)
        hist = super().fit(dataset, opt=opt, steps=steps, log=log, lamb=lamb, callback=callback,
                           **kwargs)
        for key in ("train_loss", "test_loss", "reg"):  # pykan's entries are NumPy scalars
            if key in hist:
                hist[key] = [_np.float64(v) for v in hist[key]]
        return hist

    def _frame_writer(self, img_folder, freq, in_vars, out_vars, beta, user_callback):
        if img_folder is None:
            raise ValueError("fit(save_fig=True) needs img_folder=<a folder for the frames>: "
                             "kanlab writes files only where you ask")
        freq = max(1, int(freq))
        os.makedirs(img_folder, exist_ok=True)

        def frame(step, model, hist):
            if step % freq == 0:
                fig = model.plot(in_vars=in_vars, out_vars=out_vars, title=f"Step {step}",
                                 beta=beta)
                fig.savefig(os.path.join(img_folder, f"{step}.jpg"), bbox_inches="tight", dpi=200)
                plt.close(fig)
            return user_callback(step, model, hist) if user_callback is not None else None
        return frame

    @_logged("refine")
    def refine(self, new_grid=None, x=None, grid=None):
        """A new model with ``new_grid`` intervals computing the same function (``grid=`` is
        accepted as another name for it, as pykan's tutorials pass it)."""
        if new_grid is None:
            new_grid = grid
        elif grid is not None and grid != new_grid:
            raise ValueError(f"refine() got new_grid={new_grid!r} and grid={grid!r}: pass one")
        if new_grid is None:
            raise ValueError("refine() needs the new number of grid intervals: refine(10)")
        return super().refine(new_grid, x=x)

    @_logged("prune")
    def prune(self, node_th=1e-2, edge_th=3e-2, x=None):
        return super().prune(node_th=node_th, edge_th=edge_th, x=x)

    def tree(self, x=None, in_var=None, style="tree", sym_th=1e-3, sep_th=1e-1,
             skip_sep_test=False, verbose=False):
        """The tree of separable groups of the network's function on ``x`` (default: the
        remembered input); see :func:`kanlab.hypothesis.plot_tree`. Returns the Figure."""
        x = self._data(x, "tree()")
        return plot_tree(self, x, in_var=in_var, style=style, sym_th=sym_th, sep_th=sep_th,
                         skip_sep_test=skip_sep_test, verbose=verbose)

    def evaluate(self, dataset):
        """pykan's evaluation dict: test RMSE, active edges and grid size (plus train RMSE)."""
        out = super().evaluate(dataset)
        out["n_edge"] = self.n_edge
        out["n_grid"] = self.grid
        return out

    def copy(self):
        """A deep copy that continues the same history."""
        from ._history import snapshot

        twin = snapshot(self)
        return twin


def _wrap_logged():
    for name in ("prune_node", "prune_edge", "prune_input", "unfix_symbolic", "remove_edge",
                 "remove_node", "swap", "auto_swap", "expand_depth", "expand_width", "perturb",
                 "module"):
        base = getattr(_KAN, name, None)
        if base is not None and name not in MultKAN.__dict__:
            setattr(MultKAN, name, _logged(name)(base))


_wrap_logged()
KAN = MultKAN
