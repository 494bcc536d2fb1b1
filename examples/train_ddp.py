"""Data-parallel training with torchrun (CPU: gloo; GPU: nccl).

    torchrun --nproc_per_node 2 examples/train_ddp.py

Every rank builds the same dataset and model; fit() starts the process group, shards the rows,
all-reduces loss and gradients and keeps the grids identical. Only rank 0 prints and saves.
"""
import os

import torch
import torch.distributed as dist

from kanlab import KAN, create_dataset

f = lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)  # noqa: E731
dataset = create_dataset(f, n_var=2, train_num=4000, test_num=1000, seed=0)
model = KAN(width=[2, 5, 1], grid=5, k=3, seed=1)
history = model.fit(dataset, opt="LBFGS", steps=30, lamb=0.001)
if dist.is_initialized() and dist.get_rank() == 0 or not dist.is_initialized():
    print(f"world size {int(os.environ.get('WORLD_SIZE', 1))}: "
          f"train RMSE {history['train_loss'][-1]:.3e}, test RMSE {history['test_loss'][-1]:.3e}")
    model.save("ddp_toy.kan")
if dist.is_initialized():
    dist.destroy_process_group()
