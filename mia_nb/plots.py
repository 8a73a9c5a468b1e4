"""Figures. Each function returns a matplotlib Figure; the notebook saves and shows it."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

sns.set_theme(style="whitegrid", context="notebook")


def _show_image(ax: plt.Axes, img: torch.Tensor) -> None:
    """Draw one uint8 or [0,1] CHW image on `ax`, without ticks."""
    arr = img.detach().cpu().float()
    if arr.max() > 1.0:
        arr = arr / 255.0
    arr = arr.clamp(0, 1).permute(1, 2, 0).numpy()
    ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray" if arr.shape[-1] == 1 else None,
              vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10,
               title: str = "", size: float = 1.2) -> plt.Figure:
    """A grid of images (uint8 or [0,1], CHW) with optional per-image titles."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            _show_image(ax, images[i])
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def class_grid(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], per_class: int = 8,
               seed: int = 0, title: str = "") -> plt.Figure:
    """`per_class` random images of each class, one row per class, class names on the left."""
    rng = np.random.default_rng(seed)
    labels_np = labels.numpy()
    n_classes = len(classes) if classes else int(labels_np.max()) + 1
    fig, axes = plt.subplots(n_classes, per_class, figsize=(per_class * 1.0, n_classes * 1.0), squeeze=False)
    for c in range(n_classes):
        idx = np.flatnonzero(labels_np == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for j, ax in enumerate(axes[c]):
            if j < len(pick):
                _show_image(ax, images[pick[j]])
            else:
                ax.axis("off")
        axes[c, 0].set_ylabel(classes[c] if classes else str(c), rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def split_overview(table: pd.DataFrame, balance: pd.DataFrame) -> plt.Figure:
    """Split sizes (bars) and class balance per split (heatmap of class fractions)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 1.6]})
    sns.barplot(data=table, y="part", x="n_images", hue="role", dodge=False, legend=False, ax=a)
    a.set_xlabel("images")
    a.set_ylabel("")
    a.set_title("Split sizes")
    sns.heatmap(balance, annot=True, fmt=".2f", cmap="Blues", cbar=False, ax=b, annot_kws={"fontsize": 7})
    b.set_title("Class fraction per split (stratified: rows match)")
    b.set_ylabel("")
    fig.tight_layout()
    return fig


def learning_curves(histories: dict[str, dict[str, list[float]]]) -> plt.Figure:
    """Training loss and train / held-out accuracy per epoch for one or more models."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    for i, (name, h) in enumerate(histories.items()):
        color = f"C{i}"
        a.plot(h["epoch"], h["train_loss"], color=color, label=name)
        b.plot(h["epoch"], h["train_acc"], color=color, label=f"{name}: train")
        ep, acc = np.array(h["epoch"]), np.array(h["heldout_acc"])
        ok = ~np.isnan(acc)
        b.plot(ep[ok], acc[ok], color=color, ls="--", marker="o", ms=3, label=f"{name}: held-out")
    a.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    b.set(xlabel="epoch", ylabel="accuracy", title="Accuracy: the gap is what MIAs feed on")
    a.legend()
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def claims_forest(df: "pd.DataFrame") -> plt.Figure:
    """Each claim's paired 95% interval in units of its own band, claimed direction to the right.

    x = measured / band (negated for '<' claims): the grey zone [−1, 1] is the no-effect band, so a
    '>'/'<' claim holds when its interval lies right of +1 and fails when it lies left of −1; an
    equivalence claim ('=') holds inside the band.
    """
    colours = {"holds": "tab:green", "does not hold": "tab:red", "inconclusive": "tab:orange",
               "not calibrated here": "tab:purple", "not measured": "tab:gray"}
    n = len(df)
    fig, ax = plt.subplots(figsize=(9, 0.42 * n + 1.4))
    ax.axvspan(-1, 1, color="0.9", zorder=0)
    for i, r in enumerate(df.itertuples()):
        y = n - 1 - i
        if np.isnan(r.measured):
            continue
        sign = -1.0 if r.side == "<" else 1.0
        x, lo, hi = (sign * v / r.band for v in (r.measured, r.ci_lo, r.ci_hi))
        lo, hi = min(lo, hi), max(lo, hi)
        ax.errorbar(x, y, xerr=[[x - lo], [hi - x]], fmt="o" if r.side != "=" else "s",
                    color=colours.get(r.verdict, "k"), capsize=3)
    ax.set_yticks(range(n))
    ax.set_yticklabels([c if len(c) < 75 else c[:72] + "…" for c in df.claim[::-1]], fontsize=7)
    ax.set_xscale("symlog", linthresh=2)
    ax.set_xlabel("effect in units of the claim's no-effect band (grey), claimed direction → right; "
                  "squares: equivalence claims")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in colours.items()]
    ax.legend(handles=handles, loc="lower right", fontsize=7)
    ax.set_title("The paper's findings as paired tests on this run")
    fig.tight_layout()
    return fig


def _place_labels(ax: plt.Axes, xs: "np.ndarray", ys: "np.ndarray", names: "Sequence[str]",
                  colors: "Sequence | None" = None, fontsize: int = 7) -> None:
    """Label points (in their colours) so that labels overlap neither each other, the points nor the axes' edges."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    pts = ax.transData.transform(np.column_stack([xs, ys]))
    placed = [Bbox.from_extents(px - 5, py - 5, px + 5, py + 5) for px, py in pts]  # the markers
    order = np.argsort(-np.asarray(ys, dtype=float), kind="stable")
    candidates = [(side, 4 + 10 * s * k) for k in range(0, 10) for s in ((1,) if k == 0 else (1, -1))
                  for side in (1, -1)]
    for i in order:
        for side, dy in candidates:
            text = ax.annotate(str(names[i]), (xs[i], ys[i]), textcoords="offset points", xytext=(6 * side, dy),
                               fontsize=fontsize, ha="left" if side > 0 else "right",
                               color=colors[i] if colors is not None else "k",
                               va="bottom" if dy >= 0 else "top",
                               arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5} if abs(dy) > 4 else None)
            text.update_positions(renderer)
            box = Text.get_window_extent(text, renderer).expanded(1.02, 1.1)  # the text only, not its leader line
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(b) for b in placed):
                placed.append(box)
                break
            text.remove()
        else:  # no free spot: label it anyway
            ax.annotate(str(names[i]), (xs[i], ys[i]), textcoords="offset points", xytext=(6, 4), fontsize=fontsize,
                        color=colors[i] if colors is not None else "k")


def separation_kde(samples: "dict[str, dict[str, np.ndarray]]", table: "pd.DataFrame | None" = None,
                   ood_name: str = "OOD", ncols: int = 4) -> plt.Figure:
    """The paper's KDE figure: per variant, densities of the max score of members, held-out and one OOD pool.

    Each panel has its own x range. When the OOD curve peaks far above the member / held-out curves,
    the y axis is cut at those two curves (the OOD peak is marked as off scale).
    """
    names = list(samples)
    if not names:
        raise ValueError("separation_kde: no variants to plot")
    ncols = min(ncols, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.8 * ncols, 2.9 * nrows + 0.8), squeeze=False,
                             layout="constrained")
    style = {"members": ("members", "tab:blue", "-"), "heldout": ("held-out non-members", "tab:orange", "--"),
             "ood": (f"{ood_name} non-members", "tab:green", ":")}
    w1 = table.set_index("variant") if table is not None else None
    for i, (ax, name) in enumerate(zip(axes.flat, names)):
        peaks = {}
        for key, (label, color, ls) in style.items():
            x = np.asarray(samples[name][key], dtype=float)
            n_polys = len(ax.collections)
            if np.ptp(x) < 1e-9:  # a point mass has no density: draw it as a line
                ax.axvline(x[0], color=color, lw=2, ls=ls, label=label)
                peaks[key] = np.inf
            else:
                sns.kdeplot(x=x, ax=ax, fill=True, alpha=0.2, lw=1.6, ls=ls, color=color, label=label, cut=0,
                            warn_singular=False)
                peaks[key] = max((float(p.vertices[:, 1].max()) for c in ax.collections[n_polys:]
                                  for p in c.get_paths() if len(p.vertices)), default=0.0)
        inner = max(peaks["members"], peaks["heldout"])
        if np.isfinite(inner) and inner > 0 and peaks["ood"] > 3 * inner:
            ax.set_ylim(0, 1.25 * inner)
            ax.annotate(f"{ood_name} peak off scale ↑", (0.98, 0.97), xycoords="axes fraction", ha="right", va="top",
                        fontsize=7, color="tab:green")
        title = name
        if w1 is not None and name in w1.index:
            r = w1.loc[name]
            title += f"\nW₁ held-out {r['w1_member_heldout']:.3f} · {ood_name} {r['w1_member_ood']:.3f}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("max score", fontsize=9)
        ax.set_ylabel("density" if i % ncols == 0 else "", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle("Max score of the target: members vs non-members (each panel has its own x range)")
    return fig


def privacy_utility(table: "pd.DataFrame", attack: str = "threshold") -> plt.Figure:
    """Held-out accuracy (y) against attack AUROC, TPR at 1% FPR (held-out) and mean OOD FPR, one point per variant.

    `table`: index = variant, columns family, heldout_acc, auroc, tpr_at_1pct_fpr(_lo, _hi), mean_ood_fpr.
    """
    need = {"family", "heldout_acc", "auroc", "tpr_at_1pct_fpr", "mean_ood_fpr"}
    if table.empty or not need <= set(table.columns):
        raise ValueError(f"privacy_utility: need a non-empty table with columns {sorted(need)}")
    families = list(dict.fromkeys(table["family"]))
    colors = dict(zip(families, sns.color_palette("tab10", len(families))))
    panels = [("auroc", "attack AUROC (held-out non-members)", 0.5),
              ("tpr_at_1pct_fpr", "attack TPR at 1% FPR (held-out), 95% CI", 0.01),
              ("mean_ood_fpr", "attack FPR, mean over OOD pools", None)]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.8), sharey=True, layout="constrained")
    y = table["heldout_acc"].to_numpy(float)
    for ax, (col, xlabel, chance) in zip(axes, panels):
        x = table[col].to_numpy(float)
        for fam in families:
            sel = (table["family"] == fam).to_numpy()
            xerr = None
            if col == "tpr_at_1pct_fpr" and {f"{col}_lo", f"{col}_hi"} <= set(table.columns):
                lo, hi = table[f"{col}_lo"].to_numpy(float)[sel], table[f"{col}_hi"].to_numpy(float)[sel]
                xerr = np.vstack([np.clip(x[sel] - lo, 0, None), np.clip(hi - x[sel], 0, None)])
            star = fam == "vanilla"  # the reference every other variant is compared with
            ax.errorbar(x[sel], y[sel], xerr=xerr, fmt="*" if star else "o", ms=13 if star else 7, color=colors[fam],
                        mec="k", mew=0.6,
                        ecolor=colors[fam], elinewidth=0.8, alpha=0.9, capsize=2, label=fam, zorder=3)
        if chance is not None:
            ax.axvline(chance, color="gray", ls=":", lw=1)
            ax.annotate("chance", (chance, 0.02), xycoords=("data", "axes fraction"), fontsize=7, color="gray",
                        xytext=(2, 0), textcoords="offset points")
        ax.set_xlabel(xlabel)
    lo_y, hi_y = np.nanmin(y), np.nanmax(y)
    pad = max(hi_y - lo_y, 0.02)
    axes[0].set_ylim(lo_y - 0.15 * pad, hi_y + 0.45 * pad)  # room above the top points for their labels
    axes[0].set_ylabel("held-out accuracy (utility)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(families), frameon=False)
    fig.suptitle(f"Privacy–utility: every variant of notebooks 04–07 ({attack} attack)")
    fig.canvas.draw()  # fix the layout before placing labels in screen space
    fig.set_layout_engine("none")
    for ax, (col, _, _) in zip(axes, panels):
        _place_labels(ax, table[col].to_numpy(float), y, list(table.index),
                      [sns.set_hls_values(colors[f], l=0.35) for f in table["family"]])
    return fig


# --- attacks (notebook 04): ROC curves, score distributions, threshold explorer ---------------------

_SCORE_EPS = 1e-15  # scores within this of 0 or 1 are drawn at the edge of a logit axis


def _rates_at(member_scores: np.ndarray, nonmember_scores: np.ndarray,
              thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TPR, FPR and precision of the rule "member iff score > t" for each t (precision NaN if none called)."""
    sm, sn = np.sort(np.asarray(member_scores, float)), np.sort(np.asarray(nonmember_scores, float))
    t = np.atleast_1d(np.asarray(thresholds, float))
    tp = len(sm) - np.searchsorted(sm, t, side="right")
    fp = len(sn) - np.searchsorted(sn, t, side="right")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
    return tp / len(sm), fp / len(sn), precision


def _logit_limits(*arrays: np.ndarray) -> tuple[float, float]:
    """x-limits for a logit axis that hold every value (clipped to [eps, 1 - eps]) with a margin."""
    from scipy.special import expit, logit
    v = np.clip(np.concatenate([np.atleast_1d(np.asarray(a, float)) for a in arrays]), _SCORE_EPS, 1 - _SCORE_EPS)
    lo, hi = logit(v.min()), logit(v.max())
    pad = max(0.05 * (hi - lo), 0.5)
    return float(expit(lo - pad)), float(min(expit(hi + pad), 1 - _SCORE_EPS / 10))


def _score_axis(ax: plt.Axes, lo: float, hi: float) -> bool:
    """x-axis over scores in [lo, hi]: a logit scale with 0.9, 0.99, … ticks when they span the tails.

    Returns True when the logit scale was used (a span under 4 logit units stays linear).
    """
    from matplotlib.ticker import NullFormatter, NullLocator
    from scipy.special import logit
    ax.set_xlim(lo, hi)
    if logit(hi) - logit(lo) < 4:
        return False
    ax.set_xscale("logit")
    ax.set_xlim(lo, hi)
    ks = range(1, 16)
    ticks = [(10.0 ** -k, f"{10.0 ** -k:g}" if k <= 3 else f"$10^{{-{k}}}$") for k in ks]
    ticks += [(0.5, "0.5")] + [(1 - 10.0 ** -k, f"{1 - 10.0 ** -k:.{k}f}" if k <= 3 else f"$1-10^{{-{k}}}$")
                               for k in ks]
    inside = [t for t in sorted(ticks) if lo <= t[0] <= hi]
    inside = inside[::-1][::max(1, int(np.ceil(len(inside) / 8)))][::-1]
    ax.set_xticks([v for v, _ in inside], [lab for _, lab in inside])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    return True


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], n_nonmembers: int,
               points: dict[str, tuple[float, float]] | None = None, low_fprs: Sequence[float] = (0.01, 0.001),
               title: str = "") -> plt.Figure:
    """ROC curves (name → (fpr, tpr)) on a linear and a log-log panel, with the chance line.

    `points` marks each attack's own decision (fpr, tpr) on the linear panel; the log-log panel runs
    down to 1/n_nonmembers (the smallest non-zero FPR that many non-members can show) and marks
    `low_fprs` with dotted lines.
    """
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 5.2))
    floor = 1.0 / max(int(n_nonmembers), 1)
    styles = ["-", "--", "-.", ":"]
    for i, (name, (fpr, tpr)) in enumerate(curves.items()):
        color, style = f"C{i}", {"ls": styles[i % 4], "lw": 2.4 - 0.3 * (i % 4)}
        a.plot(fpr, tpr, color=color, label=name, **style)
        b.plot(fpr, tpr, color=color, label=name, **style)
        if points and name in points:
            pf, pt = points[name]
            a.plot([pf], [pt], "o", color=color, ms=8, mec="black", mew=0.8)
    a.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance (guessing)")
    b.plot([floor, 1], [floor, 1], color="grey", ls="--", lw=1, label="chance (guessing)")
    if points:
        a.plot([], [], "o", color="white", mec="black", label="each attack's own decision")
    a.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate (non-members called members)",
          ylabel="true-positive rate (members found)", title="ROC, linear axes")
    a.set_aspect("equal")
    a.legend(loc="lower right", fontsize=8)
    b.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1.05), xlabel="false-positive rate (log)",
          ylabel="true-positive rate (log)", title="ROC, log-log: the low-FPR region")
    b.set_aspect("equal")
    for alpha in low_fprs:
        if alpha >= floor:
            b.axvline(alpha, color="black", ls=":", lw=1)
            b.text(alpha, 0.97, f"{alpha:.1%} FPR ", fontsize=8, rotation=90, va="top", ha="right",
                   transform=b.get_xaxis_transform())
    b.text(0.98, 0.02, f"axes end at 1/{n_nonmembers:,} non-members\n(a straight segment = tied scores)",
           transform=b.transAxes, ha="right", va="bottom", fontsize=8, color="dimgrey")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def score_distributions(member_scores: np.ndarray, nonmember_scores: np.ndarray, threshold: float,
                        labels: tuple[str, str] = ("members", "non-members"), what: str = "max softmax score",
                        bins: int = 40, title: str = "") -> plt.Figure:
    """Histograms (fraction of each set) of a score in [0, 1] for members vs non-members, threshold marked.

    Left: linear axis. Right: the same on a logit axis, which spreads out the values piled up near
    1 (and 0); values within 1e-15 of 0 or 1 are drawn at the edge. The legend gives the fraction of
    each set above the threshold: TPR for members, FPR for non-members.
    """
    from scipy.special import expit, logit
    sm, sn = np.asarray(member_scores, float), np.asarray(nonmember_scores, float)
    tpr, fpr, _ = _rates_at(sm, sn, np.array([threshold]))
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.4))
    lo, hi = _logit_limits(sm, sn, [threshold])
    edges_lin = np.linspace(0, 1, bins + 1)
    edges_logit = expit(np.linspace(logit(lo), logit(hi), bins + 1))
    sets = [(sm, f"{labels[0]} (n={len(sm):,}): {tpr[0]:.1%} above t = TPR", "C0"),
            (sn, f"{labels[1]} (n={len(sn):,}): {fpr[0]:.1%} above t = FPR", "C3")]
    for ax, edges, clip in ((a, edges_lin, (0.0, 1.0)), (b, edges_logit, (lo, hi))):
        for s, lab, color in sets:
            ax.hist(np.clip(s, *clip), bins=edges, weights=np.full(len(s), 1.0 / len(s)), histtype="stepfilled",
                    alpha=0.35, color=color, edgecolor=color, lw=1.4, label=lab)
        ax.axvline(threshold, color="black", lw=1.6, ls="--", label=f"learned threshold t = {threshold:.6g}")
        ax.set_ylabel("fraction of the set")
    a.set(xlim=(0, 1), xlabel=what, title=f"{what}: linear axis")
    if _score_axis(b, lo, hi):
        b.set(xlabel=f"{what} (logit axis)", title="the same on a logit axis: spreads out 0.9, 0.99, 0.999 …")
        at_edge = float(np.mean(np.r_[sm, sn] >= 1 - _SCORE_EPS))
        if at_edge > 0:
            b.text(0.99, 0.97, f"right edge: {at_edge:.1%} of all scores\nare ≥ 1−10⁻¹⁵ (incl. exactly 1.0)",
                   transform=b.transAxes, ha="right", va="top", fontsize=8, color="dimgrey")
        for lab in b.get_xticklabels():
            lab.set_rotation(30)
    else:
        b.set(xlabel=what, title="the same, zoomed to the range of the scores")
    a.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def threshold_explorer(member_scores: np.ndarray, nonmember_scores: np.ndarray, learned: float,
                       current: float | None = None, what: str = "max softmax score") -> plt.Figure:
    """TPR, FPR and precision of "member iff score > t" against the threshold t (logit axis).

    The learned threshold is a dashed line; `current` (e.g. a slider's value) gets markers and a
    read-out. Precision depends on the ratio of members to non-members tested (in the title).
    """
    sm, sn = np.asarray(member_scores, float), np.asarray(nonmember_scores, float)
    lo, hi = _logit_limits(sm, sn, [learned])
    grid = np.unique(np.clip(np.r_[sm, sn, lo, hi], lo, hi))
    tpr, fpr, prec = _rates_at(sm, sn, grid)
    fig, ax = plt.subplots(figsize=(9, 4.6))
    ax.step(grid, tpr, where="post", color="C0", lw=1.8, label="TPR: members called members")
    ax.step(grid, fpr, where="post", color="C3", lw=1.8, label="FPR: non-members called members")
    ax.step(grid, prec, where="post", color="C2", lw=1.8, label="precision: members among those called")
    ax.axhline(len(sm) / (len(sm) + len(sn)), color="C2", ls=":", lw=1, label="precision of guessing")
    ax.axvline(learned, color="black", ls="--", lw=1.4, label=f"learned threshold {learned:.6g}")
    if current is not None:
        ct, cf, cp = (float(v[0]) for v in _rates_at(sm, sn, np.array([current])))
        ax.axvline(current, color="dimgrey", lw=1)
        for val, color in ((ct, "C0"), (cf, "C3"), (cp, "C2")):
            if np.isfinite(val):
                ax.plot([np.clip(current, lo, hi)], [val], "o", color=color, ms=8, mec="black")
        ax.set_title(f"t = {current:.6g}: TPR {ct:.3f} · FPR {cf:.3f} · precision {cp:.3f}", fontsize=10)
    logit_axis = _score_axis(ax, lo, hi)
    ax.set(ylim=(-0.02, 1.02), ylabel="rate",
           xlabel=f"threshold t on the {what} (member iff score > t{'; logit axis' if logit_axis else ''})")
    for lab in ax.get_xticklabels():
        lab.set_rotation(30 if logit_axis else 0)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8,
              title=f"{len(sm):,} members vs {len(sn):,} non-members", title_fontsize=8)
    fig.tight_layout()
    return fig


def threshold_slider(member_scores: np.ndarray, nonmember_scores: np.ndarray, learned: float,
                     n_steps: int = 201, what: str = "max softmax score"):
    """An ipywidgets slider over the threshold that redraws `threshold_explorer` (needs a live kernel).

    The slider's stops are quantiles of all scores, so it moves evenly through the data however much
    of it is piled up near 1; it starts at the stop nearest the learned threshold. Returns the
    `ipywidgets.interactive` (display it as a cell's last expression), or None in a headless run
    (the runner sets MIA_NB_HEADLESS), where the static `threshold_explorer` figure stands in.
    """
    import os
    if os.environ.get("MIA_NB_HEADLESS"):  # papermill run: no live kernel to move a slider
        return None
    import ipywidgets as widgets
    from IPython.display import display
    pooled = np.r_[np.asarray(member_scores, float), np.asarray(nonmember_scores, float)]
    stops = np.unique(np.r_[np.quantile(pooled, np.linspace(0, 1, n_steps)), learned])
    start = float(stops[np.argmin(np.abs(stops - learned))])
    slider = widgets.SelectionSlider(options=[(f"{t:.6g}", float(t)) for t in stops], value=start,
                                     description="threshold", continuous_update=False,
                                     layout=widgets.Layout(width="90%"))

    def draw(threshold: float) -> None:
        fig = threshold_explorer(member_scores, nonmember_scores, learned, current=threshold, what=what)
        display(fig)
        plt.close(fig)

    return widgets.interactive(draw, threshold=slider)


def pool_rows_grid(images: "dict[str, torch.Tensor]", titles: "dict[str, Sequence[str]] | None" = None,
                   row_labels: "dict[str, str] | None" = None, ncols: int = 8, title: str = "",
                   size: float = 1.1) -> plt.Figure:
    """One row of images per pool ([0,1] CHW), the pool's name (or row label) on the left; empty cells blank."""
    names = list(images)
    fig, axes = plt.subplots(len(names), ncols, figsize=(ncols * size + 1.6, len(names) * size * (1.35 if titles else 1.05)),
                             squeeze=False)
    for r, name in enumerate(names):
        imgs = images[name]
        for j, ax in enumerate(axes[r]):
            if j < len(imgs):
                _show_image(ax, imgs[j])
                if titles is not None and j < len(titles.get(name, [])):
                    ax.set_title(titles[name][j], fontsize=7)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
                for s in ax.spines.values():
                    s.set_visible(False)
                ax.set_facecolor("none")
        label = (row_labels or {}).get(name, name)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        if not len(imgs):
            axes[r, 0].text(0.0, 0.5, "none", transform=axes[r, 0].transAxes, va="center", fontsize=8, color="0.4")
    fig.tight_layout()
    if title:  # above the first row's image titles (the saved figure's bounding box is tight)
        fig.suptitle(title, y=1.0 + (0.3 if titles else 0.05) / fig.get_figheight(), va="bottom")
    return fig


def fpr_heatmap(fpr: "pd.DataFrame", title: str = "") -> plt.Figure:
    """FPR of every attack (columns) on every non-member pool (rows), annotated, 0 to 1."""
    fig, ax = plt.subplots(figsize=(1.5 * fpr.shape[1] + 3.0, 0.42 * fpr.shape[0] + 1.6))
    sns.heatmap(fpr.astype(float), annot=True, fmt=".3f", cmap="Reds", vmin=0, vmax=1, linewidths=0.5,
                cbar_kws={"label": "false-positive rate"}, ax=ax, annot_kws={"fontsize": 8})
    ax.set_xlabel("attack (decision fitted on the shadow)")
    ax.set_ylabel("non-member pool")
    ax.set_title(title or "Share of each pool the attacks call 'member'")
    fig.tight_layout()
    return fig


def pool_roc_metrics(rows: "pd.DataFrame", pools: "Sequence[str] | None" = None) -> plt.Figure:
    """AUROC and TPR at 1% / 0.1% FPR (95% bootstrap CI) of every attack with each pool as the negatives."""
    pools = list(pools) if pools is not None else list(dict.fromkeys(rows["nonmember_set"]))
    attacks = list(dict.fromkeys(rows["attack"]))
    panels = [("auroc", None, "AUROC (0.5 = chance)"), ("tpr_at_1pct_fpr", "tpr_at_1pct_fpr", "TPR at 1% FPR"),
              ("tpr_at_01pct_fpr", "tpr_at_01pct_fpr", "TPR at 0.1% FPR")]
    fig, axes = plt.subplots(1, 3, figsize=(14, 0.38 * len(pools) + 1.8), sharey=True)
    y0 = np.arange(len(pools))[::-1]
    step = 0.7 / max(len(attacks), 1)
    for i, a in enumerate(attacks):
        sub = rows[rows.attack == a].set_index("nonmember_set").reindex(pools)
        y = y0 + 0.35 - step / 2 - i * step
        for ax, (col, ci, _) in zip(axes, panels):
            x = sub[col].to_numpy(float)
            err = None
            if ci:
                err = np.vstack([x - sub[f"{ci}_lo"].to_numpy(float), sub[f"{ci}_hi"].to_numpy(float) - x]).clip(0)
            ax.errorbar(x, y, xerr=err, fmt="o", ms=4, capsize=2, color=f"C{i}", label=a)
    for ax, (_, _, label) in zip(axes, panels):
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel(label)
    axes[0].axvline(0.5, color="0.3", ls="--", lw=1)
    axes[0].set_yticks(y0)
    axes[0].set_yticklabels(pools)
    axes[0].set_ylabel("non-member pool (the negatives)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.9), fontsize=8, title="attack",
               title_fontsize=8)
    fig.suptitle("Members against each pool: ranking quality (AUROC) and true positives at a low false-positive rate")
    fig.tight_layout()
    return fig


def mmps_by_pool(table: "pd.DataFrame") -> plt.Figure:
    """Mean max prediction score per pool (bars coloured by kind), the members' MMPS as a reference line."""
    members = table[table.set == "members"]
    pools = table[table.set != "members"]
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(pools) + 1.6))
    sns.barplot(data=pools, y="set", x="mmps", hue="group", dodge=False, ax=ax)
    for i, v in enumerate(pools["mmps"]):
        ax.text(v - 0.01 if v > 0.9 else v + 0.01, i, f"{v:.3f}", va="center", ha="right" if v > 0.9 else "left",
                fontsize=8, bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 1})
    if len(members):
        m = float(members["mmps"].iloc[0])
        ax.axvline(m, color="k", ls="--", lw=1.2, label=f"members: {m:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean max prediction score (MMPS) of the target")
    ax.set_ylabel("non-member pool")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="kind", title_fontsize=8)
    ax.set_title("How confident the target is on each pool")
    fig.tight_layout()
    return fig


def unbounded_supply(table: "pd.DataFrame") -> plt.Figure:
    """False positives (left) and FPR with its 95% CI (right) against the number of generated images scored."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    for i, (name, g) in enumerate(table.groupby("attack", sort=False)):
        g = g.sort_values("n_generated")
        a.plot(g.n_generated, g.false_positives, marker="o", color=f"C{i}", label=name)
        b.plot(g.n_generated, g.fpr, marker="o", color=f"C{i}", label=name)
        b.fill_between(g.n_generated, g.fpr_lo, g.fpr_hi, color=f"C{i}", alpha=0.15)
    a.set(xlabel="generated images scored (first n)", ylabel="false positives (fakes called 'member')",
          title="False positives against the number of fakes")
    b.set(xlabel="generated images scored (first n)", ylabel="false-positive rate (95% Wilson CI)", ylim=(0, 1),
          title="False-positive rate against the number of fakes")
    for ax in (a, b):
        ax.set_xlim(0, float(table.n_generated.max()) * 1.05)
    a.set_ylim(0, max(1.0, float(table.false_positives.max())) * 1.1)
    a.legend(fontsize=8, title="attack", title_fontsize=8)
    fig.tight_layout()
    return fig


def gan_quality_bars(table: "pd.DataFrame") -> plt.Figure:
    """Per class: target accuracy on images generated for the class vs on real held-out images of it."""
    t = table[table["class"] != "all"]
    x = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(t) + 2), 3.8))
    ax.bar(x - 0.2, t.accuracy_generated, 0.4, label="generated for the class")
    ax.bar(x + 0.2, t.accuracy_heldout, 0.4, label="real held-out images")
    ax.set_xticks(x)
    ax.set_xticklabels(t["class"], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("target accuracy")
    ax.set_title("GAN quality: does the target see the class the image was generated for?")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ notebook 06 (calibration)

def reliability_diagrams(outputs: dict, n_bins: int = 15, ncols: int = 4) -> plt.Figure:
    """Reliability diagram per variant (small multiples): accuracy vs confidence in `n_bins` bins, ECE in the title.

    `outputs` maps a variant name to its held-out Outputs (anything with .probs [N, K] and .labels [N]).
    """
    from matplotlib.patches import Patch

    from .metrics import _bin_stats, ece
    if not outputs:
        raise ValueError("reliability_diagrams: no variants given")
    n = len(outputs)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.3 * nrows + 0.5), squeeze=False,
                             sharex=True, sharey=True)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    width = edges[1] - edges[0]
    for ax, (name, out) in zip(axes.flat, outputs.items()):
        probs, labels = np.asarray(out.probs), np.asarray(out.labels)
        w, conf, acc = _bin_stats(probs, labels, n_bins)
        used = w > 0
        left = edges[:-1][used]
        ax.bar(left, acc[used], width=width, align="edge", color="C0", alpha=0.6, edgecolor="white", lw=0.5)
        over = conf[used] > acc[used]
        lo, hi = np.minimum(acc, conf)[used], np.maximum(acc, conf)[used]
        ax.bar(left, hi - lo, bottom=lo, width=width, align="edge", fill=False, lw=0,
               hatch="////", edgecolor=np.where(over, "C3", "darkgreen"))
        ax.hlines(conf[used], left, left + width, color="k", lw=1.2)
        ax.plot([0, 1], [0, 1], color="0.3", ls="--", lw=1)
        ax.stairs(w, edges, color="0.45", lw=1, baseline=None)
        ax.set_title(f"{name}\nECE {ece(probs, labels, n_bins):.3f}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("confidence (max score)")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    handles = [Patch(color="C0", label="accuracy per bin"),
               plt.Line2D([], [], color="k", lw=1.2, label="mean confidence per bin"),
               Patch(fill=False, hatch="////", edgecolor="C3", lw=0, label="overconfident gap"),
               Patch(fill=False, hatch="////", edgecolor="darkgreen", lw=0, label="underconfident gap"),
               plt.Line2D([], [], color="0.45", lw=1, label="fraction of samples in the bin")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"Reliability of the target on held-out data ({n_bins} equal-width bins)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06 / nrows, 1, 1))
    return fig


def calibration_tradeoff(table: pd.DataFrame, attack: str = "threshold") -> plt.Figure:
    """ECE (x) vs held-out AUROC, TPR at 1% FPR (with CI) and FPR (held-out, mean OOD); one point per variant.

    `table`: mia_nb.tradeoff.summary (index = variant; columns ece, family, auroc, tpr_at_1pct_fpr[_lo|_hi],
    fpr_heldout, mean_ood_fpr).
    """
    families = list(dict.fromkeys(table["family"]))
    colors = {f: f"C{i}" for i, f in enumerate(families)}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    x = table["ece"].to_numpy(dtype=float)
    names = list(table.index)
    panels = [("auroc", "held-out AUROC", "Leakage: AUROC on held-out data"),
              ("tpr_at_1pct_fpr", "held-out TPR at 1% FPR", "Leakage: TPR at 1% FPR (95% CI)"),
              ("mean_ood_fpr", "FPR", "False positives: mean over OOD pools (●), held-out (○)")]
    for ax, (col, ylabel, title) in zip(axes, panels):
        y = table[col].to_numpy(dtype=float)
        if col == "tpr_at_1pct_fpr":
            err = np.vstack([y - table["tpr_at_1pct_fpr_lo"], table["tpr_at_1pct_fpr_hi"] - y])
            ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt="none", ecolor="0.65", lw=1, capsize=2, zorder=1)
        if col == "mean_ood_fpr":
            for xi, yo, yh, fam in zip(x, y, table["fpr_heldout"], table["family"]):
                ax.plot([xi, xi], [yh, yo], color=colors[fam], lw=0.8, alpha=0.5, zorder=1)
                ax.scatter(xi, yh, facecolors="white", edgecolors=colors[fam], s=40, zorder=2)
        ax.scatter(x, y, c=[colors[f] for f in table["family"]], s=45, zorder=3, edgecolors="white", lw=0.5)
        ax.set(xlabel="ECE of the target (held-out, 15 bins)", ylabel=ylabel)
        ax.set_title(title, fontsize=10)
        ax.margins(x=0.12, y=0.1)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    label_colors = [colors[f] for f in table["family"]]
    for ax, (col, _, _) in zip(axes, panels):
        _place_labels(ax, x, table[col].to_numpy(dtype=float), names, colors=label_colors)  # appended by nb 07
    handles = [plt.Line2D([], [], marker="o", ls="", color=colors[f], label=f.replace("_", " ")) for f in families]
    fig.legend(handles=handles, loc="lower center", ncol=len(families), fontsize=8, frameon=False)
    fig.suptitle(f"The calibration trade-off ({attack} attack): one point per variant", fontsize=11)
    return fig


def fpr_by_pool(fpr: pd.DataFrame, baseline: str = "vanilla", attack: str = "threshold") -> plt.Figure:
    """FPR per (variant, non-member set) as a heatmap, and its change against `baseline` (diverging colours).

    `fpr`: rows = variants, columns = non-member sets (mia_nb.tradeoff.fpr_matrix).
    """
    if baseline not in fpr.index:
        raise ValueError(f"fpr_by_pool: no row for baseline {baseline!r}")
    delta = fpr - fpr.loc[baseline]
    h = 0.42 * len(fpr) + 1.8
    w = 0.62 * fpr.shape[1] + 2.5
    fig, (a, b) = plt.subplots(1, 2, figsize=(2 * w, h))
    kw = {"annot": True, "fmt": ".2f", "annot_kws": {"fontsize": 7}, "linewidths": 0.5, "linecolor": "white"}
    sns.heatmap(fpr, vmin=0, vmax=1, cmap="Reds", ax=a, cbar_kws={"label": "FPR"}, **kw)
    a.set_title(f"FPR of the {attack} attack per non-member set", fontsize=10)
    lim = max(0.05, float(np.nanmax(np.abs(delta.to_numpy()))))
    sns.heatmap(delta, vmin=-lim, vmax=lim, cmap="RdBu_r", center=0, ax=b,
                cbar_kws={"label": f"FPR − FPR of {baseline}"}, **kw)
    b.set_title(f"Change against {baseline} (blue: fewer false positives)", fontsize=10)
    for ax in (a, b):
        ax.set_xlabel("non-member set")
        ax.set_ylabel("")
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        ax.tick_params(axis="y", labelrotation=0, labelsize=8)
        for t in ax.get_xticklabels():
            t.set_ha("right")
    fig.tight_layout()
    return fig


def reference_example(cases: dict[str, tuple[float, np.ndarray, np.ndarray]], title: str = "") -> plt.Figure:
    """Per case (title → target statistic, OUT and IN reference statistics): where the target's value falls
    in that image's own reference distribution — LiRA's per-example calibration in one picture."""
    fig, axes = plt.subplots(1, len(cases), figsize=(5.2 * len(cases), 3.4), squeeze=False)
    for ax, (name, (x, out, inn)) in zip(axes[0], cases.items()):
        both = np.concatenate([out, inn, [x]])
        bins = np.linspace(both.min() - 1, both.max() + 1, 30)
        ax.hist(out, bins=bins, alpha=0.6, color="tab:blue", label=f"OUT models ({len(out)})")
        if len(inn):
            ax.hist(inn, bins=bins, alpha=0.6, color="tab:orange", label=f"IN models ({len(inn)})")
        ax.axvline(x, color="k", lw=2, label="the target")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("log(p_y / (1 − p_y)) of this image")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("reference models")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def tpr_vs_k(df: "pd.DataFrame", alpha_suffix: str = "01pct") -> plt.Figure:
    """TPR at a low FPR (with its Clopper–Pearson interval) as the number of reference models grows."""
    col = f"tpr_at_{alpha_suffix}_fpr"
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for attack, g in df.groupby("attack", sort=False):
        ax.errorbar(g["k"], g[col], yerr=[g[col] - g[f"{col}_lo"], g[f"{col}_hi"] - g[col]], marker="o", capsize=3,
                    label=attack)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(df["k"].unique()), [str(k) for k in sorted(df["k"].unique())])
    ax.set_xlabel("reference models K")
    ax.set_ylabel(f"TPR at {'0.1' if alpha_suffix == '01pct' else '1'}% FPR")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
