"""How high do simple reference models get on Coat's random-exposure ratings? The ceiling a teacher faces.

    .venv/bin/python -m benchmarks.coat_ceiling [--data ../shared/data] [--seeds 5]

Issue #19 asks the teacher to beat the `s` base student (0.742 on Coat's test share) by 0.02 AUC. This
measures what models outside the pipeline reach from the same biased ratings (`user.txt`, rating ≥ 4 is a
click, as the converter labels them), on the same kind of split: a seeded 10 % draw of the random-exposure
ratings picks each model's hyperparameter or epoch (as the uniform share may), the other 90 % is scored.
Models: the biased click rate of the item and of the user alone; logistic regression on one-hot user and
item ids (a user bias plus an item bias), with Coat's side features, and with their user × item crosses;
matrix factorisation with biases (Adam, full batch, L2). The pipeline is not run here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from pipeline.data.converters import CLICK_MIN_RATING, read_triples
from pipeline.metrics import auc

REGULARISATION = (0.03, 0.1, 0.3, 1.0, 3.0)  # logistic regression's C, picked on the 10 % draw
MF_SETTINGS = ((4, 1e-2), (16, 1e-2), (64, 1e-2), (64, 1e-3))  # (dimension, L2)


def ratings(path: Path) -> pd.DataFrame:
    """The converter's reading of a ratings file, labelled as it labels clicks."""
    frame = read_triples(path).rename(columns={"user_id": "user", "item_id": "item"})
    frame["click"] = (frame["rating"] >= CLICK_MIN_RATING).astype(int)
    return frame


def design(frame: pd.DataFrame, user_features: np.ndarray, item_features: np.ndarray, side: bool,
           crosses: bool) -> sparse.csr_matrix:
    """One-hot user and item ids, optionally their side features and every user × item feature cross."""
    n, rows = len(frame), np.arange(len(frame))
    blocks = [sparse.csr_matrix((np.ones(n), (rows, frame["user"])), shape=(n, len(user_features))),
              sparse.csr_matrix((np.ones(n), (rows, frame["item"])), shape=(n, len(item_features)))]
    users, items = user_features[frame["user"]], item_features[frame["item"]]
    if side:
        blocks += [sparse.csr_matrix(users), sparse.csr_matrix(items)]
    if crosses:
        blocks.append(sparse.csr_matrix(np.einsum("nu,ni->nui", users, items).reshape(n, -1)))
    return sparse.hstack(blocks).tocsr()


def logistic(train: pd.DataFrame, pick: pd.DataFrame, test: pd.DataFrame, features: tuple[np.ndarray, np.ndarray],
             side: bool, crosses: bool) -> tuple[float, str]:
    """Test AUC of the regularisation whose model scores best on the pick draw."""
    x_train, x_pick, x_test = (design(f, *features, side, crosses) for f in (train, pick, test))
    fits = {c: LogisticRegression(C=c, max_iter=5000).fit(x_train, train["click"]) for c in REGULARISATION}
    best = max(fits, key=lambda c: auc(pick["click"].to_numpy(), fits[c].decision_function(x_pick)))
    return auc(test["click"].to_numpy(), fits[best].decision_function(x_test)), f"C = {best:g}"


def factorisation(train: pd.DataFrame, pick: pd.DataFrame, test: pd.DataFrame, n_users: int, n_items: int, dim: int,
                  l2: float, seed: int, epochs: int = 300) -> tuple[float, int]:
    """Test AUC of MF with user/item biases at the epoch (checked every 10) that scores best on the pick draw."""
    torch.manual_seed(seed)
    user, item = nn_embedding(n_users, dim), nn_embedding(n_items, dim)
    user_bias, item_bias = nn_embedding(n_users, 1, 0.0), nn_embedding(n_items, 1, 0.0)
    params = [*user.parameters(), *item.parameters(), *user_bias.parameters(), *item_bias.parameters()]
    optimizer = torch.optim.Adam(params, lr=0.01)

    def logits(frame: pd.DataFrame) -> torch.Tensor:
        u, i = torch.tensor(frame["user"].to_numpy()), torch.tensor(frame["item"].to_numpy())
        return (user(u) * item(i)).sum(1) + user_bias(u)[:, 0] + item_bias(i)[:, 0]

    u, i = torch.tensor(train["user"].to_numpy()), torch.tensor(train["item"].to_numpy())
    labels = torch.tensor(train["click"].to_numpy(), dtype=torch.float32)
    best = (-1.0, 0.0, 0)  # (pick AUC, test AUC, epoch)
    for epoch in range(1, epochs + 1):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(train), labels)
        (loss + l2 * (user(u).pow(2).sum(1) + item(i).pow(2).sum(1)).mean()).backward()
        optimizer.step()
        if epoch % 10 == 0:
            with torch.no_grad():
                picked = auc(pick["click"].to_numpy(), logits(pick).numpy())
                if picked > best[0]:
                    best = (picked, auc(test["click"].to_numpy(), logits(test).numpy()), epoch)
    return best[1], best[2]


def nn_embedding(rows: int, dim: int, std: float = 0.1) -> torch.nn.Embedding:
    table = torch.nn.Embedding(rows, dim)
    torch.nn.init.normal_(table.weight, std=std)  # std 0: the biases start at zero
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--seeds", type=int, default=5, help="draws of the 10 %% pick share (and MF seeds)")
    args = parser.parse_args()
    coat = args.data / "coat"
    train, random = ratings(coat / "user.txt"), ratings(coat / "random.txt")
    features = (np.loadtxt(coat / "user_item_features" / "user_features.ascii"),
                np.loadtxt(coat / "user_item_features" / "item_features.ascii"))
    results: dict[str, list[float]] = {}
    chosen: dict[str, list[str]] = {}

    def record(name: str, value: float, choice: str) -> None:
        results.setdefault(name, []).append(value)
        chosen.setdefault(name, []).append(choice)

    for seed in range(args.seeds):
        in_pick = np.random.default_rng(seed).random(len(random)) < 0.1
        pick, test = random[in_pick], random[~in_pick]
        for side, rate in (("item", train.groupby("item")["click"].mean()), ("user", train.groupby("user")["click"].mean())):
            record(f"biased click rate of the {side}", auc(test["click"].to_numpy(),
                   rate.reindex(test[side]).fillna(train["click"].mean()).to_numpy()), "")
        for name, side_features, crosses in (("LR: user + item ids", False, False),
                                             ("LR: ids + side features", True, False),
                                             ("LR: ids + side features + crosses", True, True)):
            record(name, *logistic(train, pick, test, features, side_features, crosses))
        for dim, l2 in MF_SETTINGS:
            value, epoch = factorisation(train, pick, test, *(len(f) for f in features), dim, l2, seed)
            record(f"MF d = {dim}, L2 {l2:g}", value, f"epoch {epoch}")
    table = Table(title=f"Coat: reference models on the random-exposure ratings ({args.seeds} draws of the 10 % pick share)")
    for column in ("model", "test AUC mean", "min", "max", "chosen on the pick share"):
        table.add_column(column, justify="left" if column in ("model", "chosen on the pick share") else "right")
    for name, values in results.items():
        table.add_row(name, f"{np.mean(values):.4f}", f"{min(values):.4f}", f"{max(values):.4f}",
                      ", ".join(sorted(set(chosen[name]))))
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
