"""The equations of ``bench_feynman.py``: SRBench's Feynman ground-truth set and a quick subset.

* ``load_srbench()`` reads the 100 Feynman and 20 bonus equations of AI Feynman / SRBench from
  ``FeynmanEquations.csv`` and ``BonusEquations.csv`` (default folder: ``../shared/feynman``
  next to the repository root; see the README there). Each row gives a file name, a formula in
  numpy-like notation (``arcsin``, ``ln``, ``exp``, ...) and a name and uniform sampling range
  per variable. The published lists have quirks that are handled here, not edited away:

  - the ``# variables`` column is wrong on some rows: the variables named on the row count;
  - three bonus formulas contain a ``~`` (test_9 and test_19 at the start, test_14 inside,
    ``(~r+...``). In AI Feynman's original list (and the PMLB datasets made from it) those are
    minus signs (Jackson 4.60 is ``-E0*cos(theta)*(r - ...)``), so ``tilde="minus"`` (default)
    reads them as ``-``; ``tilde="drop"`` removes them instead. Only test_14 differs as a
    function: for test_9 and test_19 the sign is a constant factor, which the exact-recovery
    rule ignores;
  - variable names that are also sympy names (``I``, ``E_n``, ``beta``, ``gamma``, ``lambd``,
    ``G``, ``S``, ``N``, ``Q``, ...) are made plain Symbols through the parser's local dict.

* ``QUICK_EQUATIONS``: the 36-equation table this benchmark started with (1 to 4 variables,
  ordered from easy to hard, plus pykan's toy problem and a 2-variable reduction of I.41.16).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import sympy
from sympy.parsing.sympy_parser import parse_expr, standard_transformations

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT.parent / "shared" / "feynman"
FILES = (("feynman", "FeynmanEquations.csv"), ("bonus", "BonusEquations.csv"))

# numpy-style names of the published formulas -> sympy. Variables are added on top of this
# (a variable wins over a function of the same name), and everything else a formula names is
# an error rather than a silently created Symbol or a sympy object such as I, E or S.
FUNCTIONS = {
    "exp": sympy.exp, "sqrt": sympy.sqrt, "ln": sympy.log, "log": sympy.log,
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan,
    "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
    "asin": sympy.asin, "acos": sympy.acos, "atan": sympy.atan,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
    "abs": sympy.Abs, "pi": sympy.pi,
}

_PARSED: dict = {}


@dataclass(frozen=True)
class Equation:
    """One benchmark problem: ``expr`` is parsable text over the names in ``ranges``."""

    name: str
    expr: str
    ranges: tuple  # ((variable, low, high), ...); every variable is drawn from U(low, high)
    tier: str = ""  # quick subset: "easy" / "medium" / "hard", a guide for --only
    note: str = ""
    source: str = "quick"  # "feynman" / "bonus" (the CSV files) or "quick"
    output: str = ""  # the published name of the target
    published: str = field(default="", compare=False)  # the formula exactly as published
    title: str = field(default="", compare=False)  # bonus equations: the published "Name"

    @property
    def var_names(self) -> list[str]:
        return [v for v, _, _ in self.ranges]

    def symbols(self) -> list[sympy.Symbol]:
        """One Symbol per variable: positive where low > 0, nonnegative where low == 0.

        The assumptions are true on the sampling range and let sympy use sqrt(x**2) = x and
        the like when it judges exact recovery.
        """
        return [_symbol(v, lo) for v, lo, _ in self.ranges]

    def sympy_expr(self) -> sympy.Expr:
        key = (self.expr, self.ranges)
        if key not in _PARSED:
            _PARSED[key] = parse_formula(self.expr, self.symbols())
        return _PARSED[key]

    def ranges_text(self) -> str:
        return ", ".join(f"{v}~U({_num(lo)},{_num(hi)})" for v, lo, hi in self.ranges)


def _symbol(name: str, low: float) -> sympy.Symbol:
    if low > 0:
        return sympy.Symbol(name, positive=True)
    if low == 0:
        return sympy.Symbol(name, nonnegative=True)
    return sympy.Symbol(name, real=True)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class _Strict(dict):
    """Parser namespace that refuses names it does not know (instead of making Symbols)."""

    def __missing__(self, key):
        raise NameError(f"unknown name {key!r}")


def parse_formula(text: str, symbols) -> sympy.Expr:
    """``text`` as a sympy expression over ``symbols`` (matched by name).

    Every variable of the formula must be among ``symbols``; the only other names allowed are
    the functions of ``FUNCTIONS`` and ``pi``.
    """
    local = dict(FUNCTIONS)
    local.update({s.name: s for s in symbols})
    # auto_symbol is left out of the transformations, so an unknown name is looked up in the
    # global dict, which knows only the builtins parse_expr needs and the sympy number types.
    glob = _Strict({"Integer": sympy.Integer, "Float": sympy.Float, "Rational": sympy.Rational,
                    "Symbol": sympy.Symbol, "__builtins__": {}})
    trans = tuple(t for t in standard_transformations if t.__name__ != "auto_symbol")
    expr = parse_expr(text, local_dict=local, global_dict=glob, transformations=trans)
    expr = sympy.sympify(expr)
    extra = {s.name for s in expr.free_symbols} - {s.name for s in symbols}
    if extra:
        raise ValueError(f"formula {text!r} uses undeclared names {sorted(extra)}")
    return expr


def _fix_tilde(text: str, tilde: str) -> str:
    if tilde == "minus":
        return text.replace("~", "-")
    if tilde == "drop":
        return text.replace("~", "")
    raise ValueError(f"tilde must be 'minus' or 'drop', not {tilde!r}")


def load_csv(path: Path, source: str, tilde: str = "minus") -> list[Equation]:
    """The rows of one published CSV file as Equations, in file order."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header = [h.strip() for h in rows[0]]
    col = {h: i for i, h in enumerate(header) if h}
    first_var = col["v1_name"]
    out = []
    for row in rows[1:]:
        if not row or not any(c.strip() for c in row):
            continue
        name = row[col["Filename"]].strip()
        published = row[col["Formula"]].strip()
        ranges = []
        for i in range(first_var, len(row) - 2, 3):
            v = row[i].strip()
            if not v:
                break
            ranges.append((v, float(row[i + 1]), float(row[i + 2])))
        names = [v for v, _, _ in ranges]
        if len(set(names)) != len(names):
            raise ValueError(f"{path.name}: {name}: a variable is named twice: {names}")
        notes = []
        stated = row[col["# variables"]].strip()
        if stated and int(float(stated)) != len(ranges):
            notes.append(f"'# variables' says {stated}, the row names {len(ranges)}")
        expr = published
        if "~" in published:
            expr = _fix_tilde(published, tilde)
            notes.append(f"published with '~' ({published}); read as "
                         + ("'-'" if tilde == "minus" else "nothing (dropped)"))
        title = row[col["Name"]].strip() if "Name" in col else ""
        out.append(Equation(name=name, expr=expr, ranges=tuple(ranges), tier="",
                            note="; ".join(notes), source=source,
                            output=row[col["Output"]].strip(), published=published,
                            title=title))
    return out


def load_srbench(folder: Path | str | None = None, tilde: str = "minus",
                 sources=("feynman", "bonus")) -> list[Equation]:
    """The 100 Feynman and 20 bonus equations (or the ``sources`` asked for), in file order."""
    folder = Path(folder) if folder else DEFAULT_DIR
    eqs = []
    for source, fname in FILES:
        if source in sources:
            path = folder / fname
            if not path.exists():
                raise FileNotFoundError(f"{path} not found (the SRBench Feynman lists; "
                                        "see shared/feynman/README.md or --equations-dir)")
            eqs += load_csv(path, source, tilde)
    names = [e.name for e in eqs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"equation names occur twice: {dup}")
    return eqs


def _r(*triples):
    return tuple(triples)


def _q(name, expr, ranges, tier, note=""):
    return Equation(name, expr, ranges, tier, note, source="quick", published=expr)


# Ordered from easy to hard so that --limit N picks quick cases first; the toy problem of
# pykan's README comes first because both libraries are known to solve it.
QUICK_EQUATIONS: tuple[Equation, ...] = (
    _q("toy", "exp(sin(pi*x1) + x2**2)", _r(("x1", -1, 1), ("x2", -1, 1)), "easy",
       "pykan README example (ranges U(-1,1))"),
    _q("I.12.1", "mu*Nn", _r(("mu", 1, 5), ("Nn", 1, 5)), "easy"),
    _q("I.12.5", "q2*Ef", _r(("q2", 1, 5), ("Ef", 1, 5)), "easy"),
    _q("I.14.4", "k_spring*x**2/2", _r(("k_spring", 1, 5), ("x", 1, 5)), "easy"),
    _q("I.25.13", "q/C", _r(("q", 1, 5), ("C", 1, 5)), "easy"),
    _q("I.29.4", "omega/c", _r(("omega", 1, 10), ("c", 1, 10)), "easy"),
    _q("I.34.27", "h*omega/(2*pi)", _r(("omega", 1, 5), ("h", 1, 5)), "easy"),
    _q("I.39.1", "3*pr*V/2", _r(("pr", 1, 5), ("V", 1, 5)), "easy"),
    _q("II.3.24", "Pwr/(4*pi*r**2)", _r(("Pwr", 1, 5), ("r", 1, 5)), "easy"),
    _q("II.8.31", "epsilon*Ef**2/2", _r(("epsilon", 1, 5), ("Ef", 1, 5)), "easy"),
    _q("II.27.18", "epsilon*Ef**2", _r(("epsilon", 1, 5), ("Ef", 1, 5)), "easy"),
    _q("II.38.14", "Y/(2*(1 + sigma))", _r(("Y", 1, 5), ("sigma", 1, 5)), "easy"),
    _q("III.12.43", "n*h/(2*pi)", _r(("n", 1, 5), ("h", 1, 5)), "easy"),
    _q("I.6.2a", "exp(-theta**2/2)/sqrt(2*pi)", _r(("theta", 1, 3)), "easy"),
    _q("I.6.2", "exp(-(theta/sigma)**2/2)/(sqrt(2*pi)*sigma)",
       _r(("sigma", 1, 3), ("theta", 1, 3)), "medium"),
    _q("I.26.2", "asin(n*sin(theta2))", _r(("n", 0, 1), ("theta2", 1, 5)), "medium"),
    _q("II.11.28", "1 + n*alpha/(1 - n*alpha/3)", _r(("n", 0, 1), ("alpha", 0, 1)), "medium"),
    _q("I.41.16*", "omega**3/(pi**2*(exp(omega/T) - 1))", _r(("omega", 1, 5), ("T", 1, 5)),
       "medium", "I.41.16 with h=2*pi, kb=c=1 (2 of its 5 variables kept)"),
    _q("I.43.31", "mob*kb*T", _r(("mob", 1, 5), ("T", 1, 5), ("kb", 1, 5)), "medium"),
    _q("II.27.16", "epsilon*c*Ef**2", _r(("epsilon", 1, 5), ("c", 1, 5), ("Ef", 1, 5)), "medium"),
    _q("III.15.27", "2*pi*alpha/(n*d)", _r(("alpha", 1, 5), ("n", 1, 5), ("d", 1, 5)), "medium"),
    _q("II.4.23", "q/(4*pi*epsilon*r)", _r(("q", 1, 5), ("epsilon", 1, 5), ("r", 1, 5)), "medium"),
    _q("I.47.23", "sqrt(gamma*pr/rho)", _r(("gamma", 1, 5), ("pr", 1, 5), ("rho", 1, 5)), "medium"),
    _q("I.10.7", "m_0/sqrt(1 - v**2/c**2)", _r(("m_0", 1, 5), ("v", 1, 2), ("c", 3, 10)), "medium"),
    _q("I.15.1", "m_0*v/sqrt(1 - v**2/c**2)", _r(("m_0", 1, 5), ("v", 1, 2), ("c", 3, 10)), "medium"),
    _q("I.34.1", "omega_0/(1 - v/c)", _r(("c", 3, 10), ("v", 1, 2), ("omega_0", 1, 5)), "medium"),
    _q("I.27.6", "1/(1/d1 + n/d2)", _r(("d1", 1, 5), ("d2", 1, 5), ("n", 1, 5)), "medium"),
    _q("II.15.4", "-mom*B*cos(theta)", _r(("mom", 1, 5), ("B", 1, 5), ("theta", 1, 5)), "medium"),
    _q("III.17.37", "beta*(1 + alpha*cos(theta))",
       _r(("beta", 1, 5), ("alpha", 1, 5), ("theta", 1, 5)), "medium"),
    _q("I.39.22", "n*kb*T/V", _r(("n", 1, 5), ("T", 1, 5), ("V", 1, 5), ("kb", 1, 5)), "medium"),
    _q("I.18.4", "(m1*r1 + m2*r2)/(m1 + m2)",
       _r(("m1", 1, 5), ("m2", 1, 5), ("r1", 1, 5), ("r2", 1, 5)), "hard"),
    _q("I.12.2", "q1*q2/(4*pi*epsilon*r**2)",
       _r(("q1", 1, 5), ("q2", 1, 5), ("epsilon", 1, 5), ("r", 1, 5)), "hard"),
    _q("I.13.4", "m*(v**2 + u**2 + w**2)/2",
       _r(("m", 1, 5), ("v", 1, 5), ("u", 1, 5), ("w", 1, 5)), "hard"),
    _q("I.30.3", "Int_0*sin(n*theta/2)**2/sin(theta/2)**2",
       _r(("Int_0", 1, 5), ("theta", 1, 5), ("n", 1, 5)), "hard"),
    _q("I.37.4", "I1 + I2 + 2*sqrt(I1*I2)*cos(delta)",
       _r(("I1", 1, 5), ("I2", 1, 5), ("delta", 1, 5)), "hard"),
    _q("I.8.14", "sqrt((x2 - x1)**2 + (y2 - y1)**2)",
       _r(("x1", 1, 5), ("x2", 1, 5), ("y1", 1, 5), ("y2", 1, 5)), "hard"),
)

SUBSETS = ("full", "feynman", "bonus", "quick")


def equations(subset: str = "full", folder=None, tilde: str = "minus") -> list[Equation]:
    """The equations of a subset: ``full`` (120), ``feynman`` (100), ``bonus`` (20), ``quick`` (36)."""
    if subset == "quick":
        return list(QUICK_EQUATIONS)
    if subset == "full":
        return load_srbench(folder, tilde)
    if subset in ("feynman", "bonus"):
        return load_srbench(folder, tilde, sources=(subset,))
    raise ValueError(f"unknown subset {subset!r}; one of {SUBSETS}")
