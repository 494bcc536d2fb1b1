"""Test helper: a pykan model carrying the same weights as a kanlab model."""
import torch


def copy_to_pykan(ours, tmp_path, width):
    """pykan's KAN with ``ours``' grids, coefficients and scales (ours' biases set to 0, which
    pykan's layer output does not have); symbolic branch off. Needs pykan installed."""
    from kan import KAN as PyKAN

    ref = PyKAN(width=width, grid=ours.act_fun[0].num, k=ours.act_fun[0].k, seed=0,
                auto_save=False, ckpt_path=str(tmp_path))
    with torch.no_grad():
        for mine, theirs in zip(ours.act_fun, ref.act_fun):
            theirs.grid.copy_(mine.grid)
            theirs.coef.copy_(mine.coef)
            theirs.scale_base.copy_(mine.scale_base)
            theirs.scale_sp.copy_(mine.scale_sp)
            mine.bias.zero_()
    ref.symbolic_enabled = False
    return ref
