"""PNG plots of a finetune run: loss curves, validation metrics, predicted vs true, distributions."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from erc.data.registry import VAD_NAMES
from erc.core.plotting import pyplot, save_png


def _save(fig, path: Path) -> str:
    return str(save_png(fig, path, dpi=110))


def write_plots(out_dir: str | Path, log_rows: list[dict], test_pred: np.ndarray,
                test_true: np.ndarray) -> dict[str, str]:
    """Write ``plots/{loss,val_metrics,pred_vs_true,pred_distribution}.png``; returns their paths."""
    plt = pyplot()
    plots = Path(out_dir) / "plots"
    paths = {}
    epochs = [r["epoch"] for r in log_rows]

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(epochs, [r["train_loss"] for r in log_rows], "o-", label="train")
    ax.plot(epochs, [r["val_loss"] for r in log_rows], "s-", label="validation")
    ax.set(xlabel="epoch", ylabel="MSE (standardised V/A/D)", title="Loss")
    ax.legend()
    paths["loss"] = _save(fig, plots / "loss.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, metric in zip(axes, ("pearson", "ccc")):
        for d in VAD_NAMES:
            ax.plot(epochs, [r[f"val_{d}_{metric}"] for r in log_rows], "o-", label=d)
        ax.set(xlabel="epoch", ylabel=metric, title=f"Validation {metric} per epoch")
        ax.legend()
    paths["val_metrics"] = _save(fig, plots / "val_metrics.png")

    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for j, (ax, d) in enumerate(zip(axes, VAD_NAMES)):
        ax.scatter(test_true[:, j], test_pred[:, j], s=6, alpha=0.4)
        lo, hi = float(min(test_true[:, j].min(), test_pred[:, j].min())), float(max(test_true[:, j].max(), test_pred[:, j].max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set(xlabel=f"true {d}", ylabel=f"predicted {d}", title=d)
    fig.suptitle("Test: predicted vs true (best-validation model)")
    paths["pred_vs_true"] = _save(fig, plots / "pred_vs_true.png")

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for j, (ax, d) in enumerate(zip(axes, VAD_NAMES)):
        bins = np.linspace(min(test_true[:, j].min(), test_pred[:, j].min()),
                           max(test_true[:, j].max(), test_pred[:, j].max()), 30)
        ax.hist(test_true[:, j], bins=bins, alpha=0.5, label="true")
        ax.hist(test_pred[:, j], bins=bins, alpha=0.5, label="predicted")
        ax.set(xlabel=d, title=f"Distribution of {d}")
        ax.legend()
    paths["pred_distribution"] = _save(fig, plots / "pred_distribution.png")
    return paths
