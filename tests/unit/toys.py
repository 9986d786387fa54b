"""Hand-weighted toy networks shared by the unit tests (answers you can work out by hand)."""

import torch


class Toy(torch.nn.Module):
    """y = w2 · relu(W1 x) with W1 = [[1, 0], [0, 2]], w2 = [1, 1]; output ``[batch, 1]``."""

    def __init__(self):
        super().__init__()
        self.first = torch.nn.Linear(2, 2, bias=False)
        self.act = torch.nn.ReLU()
        self.second = torch.nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.first.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
            self.second.weight.copy_(torch.tensor([[1.0, 1.0]]))

    def forward(self, x):
        return self.second(self.act(self.first(x)))
