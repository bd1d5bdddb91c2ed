"""A small PyTorch model through the same library steps as the templates (test project)."""

import pandas as pd
import torch

from loopline import pipeline
from loopline.steps import evaluate, gate, profile, read_table, register, split, train
from loopline.templates.tabular import FEATURES, features


class Scorer(torch.nn.Module):
    """Standardise the inputs (statistics kept as buffers), then a two-layer network."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(len(mean), 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def fit_mlp(X: pd.DataFrame, y: pd.Series, epochs: int = 30) -> torch.nn.Module:
    torch.manual_seed(0)
    inputs = torch.tensor(X.to_numpy(dtype="float32"))
    target = torch.tensor(y, dtype=torch.long)
    model = Scorer(inputs.mean(0), inputs.std(0) + 1e-6)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    weight = torch.tensor([1.0, 20.0])  # fraud is rare
    for _ in range(epochs):
        for batch in torch.split(torch.randperm(len(inputs)), 4096):
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs[batch]), target[batch], weight)
            loss.backward()
            optimiser.step()
    return model


@pipeline
def mlp(source: str, model_name: str = "fraud-mlp") -> None:
    tx = features(read_table(source, dataset="transactions"))
    train_df, test_df = split(tx, by="time", time="TX_DATETIME", test_size=0.25, gap="7D")
    model = train(train_df, model=fit_mlp, features=FEATURES, target="TX_FRAUD")
    metrics = evaluate(model, test_df, k=100)
    decision = gate(model, test_df, metrics, model_name=model_name, metric="roc_auc", min_value=0.6)
    register(model, decision, example=test_df, reference=profile(model, test_df))
