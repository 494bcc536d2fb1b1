"""The README quickstart as a script: train, refine, train, save, load, inspect one edge.

Run: .venv/bin/python examples/quickstart.py
"""
import tempfile
import time
from pathlib import Path

import torch

from kanlab import KAN, create_dataset

f = lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)  # noqa: E731
dataset = create_dataset(f, n_var=2, train_num=1000, test_num=1000, seed=0)

t0 = time.perf_counter()
model = KAN(width=[2, 5, 1], grid=3, k=3, seed=1)
model.fit(dataset, opt="LBFGS", steps=50, lamb=0.001)
model = model.refine(10)
history = model.fit(dataset, opt="LBFGS", steps=50)
print(f"test RMSE {history['test_loss'][-1]:.3e} after {time.perf_counter() - t0:.1f} s")

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "toy.kan"
    model.save(path)
    same = KAN.load(path)
    x = dataset["test_input"]
    print("loaded model gives identical outputs:", torch.equal(model(x), same(x)))

# how much of each first-layer edge is the SiLU base path and how much the spline
total, base, spline = model.activations(dataset["test_input"], parts=True)[0]
share = spline.std(0) / (base.std(0) + spline.std(0) + 1e-12)
print("spline share of each first-layer edge (in x out):")
print(share.detach().numpy().round(2))
