"""Attribution and pruning with pykan's names."""
import pytest
import torch

import kanlab
from kanlab import KAN
from pykan_util import copy_to_pykan as _copy_to_pykan


def test_attribution_matches_pykan(tmp_path):
    pytest.importorskip("kan")
    ours = KAN([3, 4, 2], grid=4, k=3, seed=0)
    x = torch.rand(300, 3) * 2 - 1
    ours.update_grid_from_samples(x)
    ref = _copy_to_pykan(ours, tmp_path, [3, 4, 2])
    ref(x)  # pykan attributes on the activations of its last forward
    ref.attribute(plot=False)
    ours.attribute(x=x)
    for a, b in zip(ours.edge_scores, ref.edge_scores):
        torch.testing.assert_close(a, b.detach(), rtol=2e-3, atol=1e-5)
    for a, b in zip(ours.node_scores, ref.node_scores):
        torch.testing.assert_close(a, b.detach(), rtol=2e-3, atol=1e-5)
    torch.testing.assert_close(ours.feature_score, ref.feature_score.detach(), rtol=2e-3, atol=1e-5)
    # scores of one node traced back to the inputs
    torch.testing.assert_close(ours.attribute(1, 2, x=x), ref.attribute(1, 2, plot=False).detach(),
                               rtol=2e-3, atol=1e-5)


def _trained(width=(3, 5, 1), seed=0, lamb=0.01):
    f = lambda x: torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2  # noqa: E731  (x_3 unused)
    ds = kanlab.create_dataset(f, n_var=3, train_num=300, test_num=100, seed=0, dtype=torch.float64)
    model = KAN(width=list(width), grid=5, seed=seed, dtype=torch.float64)
    model.fit(ds, steps=25, lamb=lamb, progress=False)
    return model, ds


@pytest.fixture(scope="module")
def trained():
    return _trained()


def test_prune_computes_what_the_masked_original_computes(trained, tmp_path):
    model, ds = trained
    model = model.copy()
    model.attribute()
    top = int(torch.argmax(model.node_scores[1]))
    model.fix_symbolic(0, 0, top, "sin", verbose=False)  # symbolic state must survive pruning
    before = [m.clone() for m in (model.act_fun[0].mask, model.act_fun[1].mask)]
    small = model.prune(node_th=1e-2, edge_th=3e-2)
    assert torch.equal(model.act_fun[0].mask, before[0])  # the original is untouched
    assert small.width[1][0] < model.width[1][0]
    kept = [n for n in range(5) if float(model.node_scores[1][n]) > 1e-2] or None
    # mask the removed nodes in a copy of the original and the weak edges like prune_edge did
    masked = model.copy()
    for n in range(5):
        if n not in kept:
            masked.remove_node(1, n)
    for l in range(2):
        sub_in = list(range(3)) if l == 0 else kept
        sub_out = kept if l == 0 else [0]
        m_small = small.act_fun[l].mask
        masked.act_fun[l].mask[torch.tensor(sub_in)[:, None], torch.tensor(sub_out)[None, :]] = m_small
        s_small = small.symbolic_fun[l].mask
        masked.symbolic_fun[l].mask[torch.tensor(sub_out)[:, None], torch.tensor(sub_in)[None, :]] = s_small
    with torch.no_grad():
        torch.testing.assert_close(small(ds["test_input"]), masked(ds["test_input"]))
    # every setting carries over, and the pruned model round-trips through save/load
    assert small.act_fun[0].num == model.act_fun[0].num and small.base_fun_name == model.base_fun_name
    assert "sin" in [n for row in small.symbolic_fun[0].funs_name for n in row]
    path = tmp_path / "pruned.kan"
    small.save(path)
    with torch.no_grad():
        torch.testing.assert_close(KAN.load(path)(ds["test_input"]), small(ds["test_input"]))


def test_prune_input_and_feature_score(trained):
    model, ds = trained
    fs = model.copy().feature_score
    assert fs.shape == (3,) and fs[2] < fs[0] and fs[2] < fs[1]  # x_3 does not matter
    small = model.prune_input(active_inputs=[0, 1])
    assert small.width_in[0] == 2
    with torch.no_grad():
        ref = model.copy()
        ref.remove_node(0, 2, mode="up")
        torch.testing.assert_close(small(ds["test_input"][:, :2]), ref(ds["test_input"]))


def test_prune_node_manual_remove_edge_and_mult_models():
    model = KAN(width=[2, [2, 1], 1], grid=3, seed=0, dtype=torch.float64)
    x = torch.rand(50, 2, dtype=torch.float64)
    small = model.prune_node(active_neurons_id=[[1, 2]], x=x)  # sum node 1 and the product
    assert small.width == [[2, 0], [1, 1], [1, 0]] and small._arity[1] == [2]
    ref = model.copy()
    ref.remove_node(1, 0)
    with torch.no_grad():
        torch.testing.assert_close(small(x), ref(x))
    model.remove_edge(0, 1, 0)
    assert model.act_fun[0].mask[1, 0] == 0 and model.symbolic_fun[0].mask[0, 1] == 0
    with pytest.raises(ValueError, match="mode"):
        model.remove_node(1, 0, mode="sideways")
    with pytest.raises(ValueError, match="needs data"):
        KAN(width=[2, 2, 1], seed=0).attribute()
