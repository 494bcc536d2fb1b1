"""scikit-learn estimators: sklearn's own checks, formulas, pipelines, pickling."""
import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("pandas")
import sympy  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from kanlab import KANClassifier, KANRegressor  # noqa: E402

# the checks fit twice and compare: no stage may be cut by the small budget, and the algebraic
# stage (which needs several seconds on sklearn's 10-feature data) would be
FAST_REG = dict(hidden=2, steps=(4, 3, 3), time_budget=5.0, max_attempts=1, grid=3, refine_grid=4,
                lib=("x", "x^2", "sin", "exp"), snap=False, algebraic=False)
FAST_CLF = dict(hidden=2, steps=6, grid=3, weights_simple=())  # symbolic rows: tested below


@parametrize_with_checks([KANRegressor(**FAST_REG), KANClassifier(**FAST_CLF)])
def test_sklearn_checks(estimator, check):
    check(estimator)


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    y = np.sin(np.pi * X[:, 0]) + X[:, 1] ** 2
    return X, y


def test_regressor_recovers_formula_and_table():
    X, y = _data()
    est = KANRegressor(time_budget=20, random_state=0).fit(X, y)
    f = est.formulas_
    assert list(f.columns[:5]) == ["complexity", "loss", "score", "equation", "sympy_format"]
    assert f["complexity"].is_monotonic_increasing and f["loss"].is_monotonic_decreasing
    assert f.loc[0, "complexity"] == 1  # the constant model comes first
    x1, x2 = sympy.symbols("x_1 x_2")
    assert sympy.simplify(est.sympy() - (sympy.sin(sympy.pi * x1) + x2 ** 2)) == 0
    assert r"\sin" in est.latex()
    np.testing.assert_allclose(est.predict(X), y, atol=1e-8)
    assert est.score(X, y) > 1 - 1e-12
    # a row's predictions are its formula
    np.testing.assert_allclose(est.predict(X, index=0), np.full(len(y), float(f.loc[0, "sympy_format"])))


def test_regressor_pickle_clone_dataframe_names():
    pd = pytest.importorskip("pandas")
    X, y = _data(120)
    df = pd.DataFrame(X, columns=["speed", "mass"])
    est = KANRegressor(**FAST_REG).fit(df, y)
    assert {s.name for s in est.sympy().free_symbols} <= {"speed", "mass"}
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(df), est.predict(df))
    c = clone(est)
    assert c.get_params() == est.get_params() and not hasattr(c, "formulas_")


def test_pipeline_and_grid_search():
    X, y = _data(150)
    pipe = make_pipeline(StandardScaler(), KANRegressor(**FAST_REG))
    pipe.fit(X, y)
    assert pipe.predict(X).shape == (150,)
    gs = GridSearchCV(KANRegressor(**FAST_REG), {"grid": [3, 4]}, cv=2).fit(X, y)
    assert gs.best_params_["grid"] in (3, 4)
    assert np.isfinite(gs.best_score_)


def test_classifier_binary_and_multiclass():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (300, 2))
    yb = np.where(X[:, 0] ** 2 + X[:, 1] > 0.3, "yes", "no")
    clf = KANClassifier(steps=20, random_state=0).fit(X, yb)
    assert list(clf.classes_) == ["no", "yes"]
    assert clf.score(X, yb) > 0.95
    p = clf.predict_proba(X)
    assert p.shape == (300, 2) and np.allclose(p.sum(1), 1)
    ym = np.digitize(X[:, 0] + 0.5 * np.sin(3 * X[:, 1]), [-0.4, 0.4])
    clf3 = KANClassifier(steps=20, random_state=0).fit(X, ym)
    assert clf3.predict_proba(X).shape == (300, 3) and clf3.score(X, ym) > 0.9
    # every formula row computes its symbolic network's logits
    row = clf3.formulas_.iloc[-1]
    assert isinstance(row["sympy_format"], list) and len(row["sympy_format"]) == 3
    import torch

    with torch.no_grad():
        logits = row["model"](torch.as_tensor(clf3._scale(X))).numpy()
    syms = clf3.variables_
    for k, e in enumerate(row["sympy_format"]):
        f = sympy.lambdify(syms, e, "numpy")
        np.testing.assert_allclose(np.broadcast_to(f(X[:, 0], X[:, 1]), (300,)), logits[:, k],
                                   rtol=1e-6, atol=1e-6)
    again = pickle.loads(pickle.dumps(clf3))  # with its symbolic networks in formulas_
    np.testing.assert_array_equal(again.predict_proba(X), clf3.predict_proba(X))
    formula_clf = clone(clf3).set_params(predict_with="formula").fit(X, ym)
    assert formula_clf.score(X, ym) > 0.8
    assert "\\" in clf3.latex() or clf3.latex()


def test_estimator_errors():
    X, y = _data(50)
    with pytest.raises(ValueError, match="model_selection"):
        KANRegressor(model_selection="nope").fit(X, y)
    with pytest.raises(ValueError, match="at least 10 samples"):
        KANRegressor().fit(X[:5], y[:5])
    with pytest.raises(ValueError, match="2 classes"):
        KANClassifier().fit(X, np.zeros(50))
    with pytest.raises(ValueError, match="predict_with"):
        KANClassifier(predict_with="x").fit(X, y > 0)
