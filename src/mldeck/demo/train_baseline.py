"""Train a baseline churn model on the demo's reference data, tracked by mldeck.

This is an ordinary user script: it uses only the public tracking API (``mldeck.start_run``) and
finds its workspace from the current folder. Run it again to add another run:

    python scripts/train_baseline.py --epochs 30 --alpha 0.0005
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss, roc_auc_score

import mldeck

TARGET, ID, TIME, SEGMENT = "churned", "customer_id", "event_time", "segment"


def design_matrix(frame: pl.DataFrame, stats: dict | None = None) -> tuple[np.ndarray, dict]:
    """Numbers imputed with the median and standardised; categories one-hot encoded."""
    features = frame.drop(TARGET, ID, TIME)
    numeric = [c for c, t in features.schema.items() if t.is_numeric()]
    categorical = [c for c in features.columns if c not in numeric]
    if stats is None:
        stats = {
            "median": {c: features[c].median() for c in numeric},
            "mean": {},
            "std": {},
            "levels": {c: sorted(features[c].drop_nulls().unique().to_list()) for c in categorical},
        }
        filled = features.select(pl.col(c).fill_null(stats["median"][c]) for c in numeric)
        stats["mean"] = {c: filled[c].mean() for c in numeric}
        stats["std"] = {c: (filled[c].std() or 1.0) for c in numeric}
    columns = [
        ((pl.col(c).fill_null(stats["median"][c]) - stats["mean"][c]) / stats["std"][c]).alias(c)
        for c in numeric
    ]
    columns += [
        (pl.col(c) == level).fill_null(False).cast(pl.Float64).alias(f"{c}={level}")
        for c, levels in stats["levels"].items()
        for level in levels
    ]
    return features.select(columns).to_numpy(), stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/samples/reference.parquet")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    frame = pl.read_parquet(args.data, glob=False).sort(TIME)
    cut = int(frame.height * 0.8)  # split by time: the last fifth is the holdout
    train, holdout = frame[:cut], frame[cut:]

    params = {"model": "SGDClassifier(log_loss)", **vars(args)}
    with mldeck.start_run(name="baseline-sgd", kind="train", params=params) as run:
        run.set_tag("purpose", "demo baseline")
        run.log(
            f"read {frame.height} rows from {args.data}; {train.height} train, {holdout.height} holdout"
        )
        x_train, stats = design_matrix(train)
        x_hold, _ = design_matrix(holdout, stats)
        y_train, y_hold = train[TARGET].to_numpy(), holdout[TARGET].to_numpy()
        model = SGDClassifier(loss="log_loss", alpha=args.alpha, random_state=args.seed)
        rng = np.random.default_rng(args.seed)
        for epoch in range(args.epochs):
            order = rng.permutation(len(y_train))
            model.partial_fit(x_train[order], y_train[order], classes=np.array([0, 1]))
            p_train = model.predict_proba(x_train)[:, 1]
            p_hold = model.predict_proba(x_hold)[:, 1]
            run.log_metrics(
                {
                    "train_log_loss": log_loss(y_train, p_train),
                    "holdout_log_loss": log_loss(y_hold, p_hold),
                    "holdout_roc_auc": roc_auc_score(y_hold, p_hold),
                },
                step=epoch,
            )
            run.set_progress((epoch + 1) / args.epochs, f"epoch {epoch + 1}/{args.epochs}")
        p_hold = model.predict_proba(x_hold)[:, 1]
        run.log_metric("holdout_accuracy", float(((p_hold >= 0.5) == y_hold).mean()))
        for segment in sorted(holdout[SEGMENT].unique().to_list()):
            mask = (holdout[SEGMENT] == segment).to_numpy()
            if len(set(y_hold[mask])) == 2:
                run.log_metric(
                    f"holdout_roc_auc.{segment}", roc_auc_score(y_hold[mask], p_hold[mask])
                )
        run.log(f"holdout ROC AUC {roc_auc_score(y_hold, p_hold):.4f}")

        card = {
            "model": "SGDClassifier(log_loss)",
            "intercept": float(model.intercept_[0]),
            "coefficients": dict(
                zip([*stats["median"], *[f"{c}={v}" for c, lv in stats["levels"].items() for v in lv]],
                    map(float, model.coef_[0]), strict=True)
            ),
            "preprocessing": stats,
        }  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model_card.json"
            path.write_text(json.dumps(card, indent=2, default=str))
            run.log_artifact(path)
        print(f"run {run.id}: holdout ROC AUC {roc_auc_score(y_hold, p_hold):.4f}")


if __name__ == "__main__":
    main()
