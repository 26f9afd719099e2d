"""Rich console output of the domain report and of the input-drift check."""

from __future__ import annotations

__all__ = ["print_domain_summary", "print_drift_report"]


def print_domain_summary(summary: dict, console, top: int = 12) -> None:
    """Bookkeeping, the domain-classifier AUC, the model score and the most different features."""
    from rich.table import Table

    for name, d in summary["domains"].items():
        console.print(
            f"[bold]{name}[/]: {len(d['files'])} file(s), read {d['events_read']}, after generator selection "
            f"{d['events_after_gen_selection']}, selected {d['events_selected']}"
            + (
                f" [yellow](no GenPart, taken as given: {', '.join(d['gen_selection_not_applied_no_genpart'])})[/]"
                if d["gen_selection_not_applied_no_genpart"]
                else ""
            )
        )
    c = summary["domain_classifier"]
    console.print(
        f"domain-classifier AUC (sim vs CMS): [bold]{c['auc_mean']:.3f} +- {c['auc_std']:.3f}[/] "
        f"({c['cross_validation']}, {c['n_sim']} sim / {c['n_cms']} CMS events, {c['n_features']} features)"
    )
    if "model_score" in summary:
        m = summary["model_score"]
        if m["mean_sim"] is not None and m["mean_cms"] is not None:
            console.print(
                f"mean P({m['class']}) of {m['model']}: sim {m['mean_sim']:.3f} +- {m['sem_sim']:.3f}, "
                f"CMS {m['mean_cms']:.3f} +- {m['sem_cms']:.3f}"
            )
    table = Table(title=f"most different input features (of {len(summary['distances'])}), by KS p-value")
    table.add_column("feature", no_wrap=True)
    for col in ("KS", "KS p-value", "W1 / std(sim)", "mean sim", "mean CMS"):
        table.add_column(col, justify="right")
    rows = [(k, v) for k, v in summary["distances"].items() if "ks" in v]
    for name, d in sorted(rows, key=lambda kv: (kv[1]["ks_pvalue"], -kv[1]["ks"]))[:top]:
        w = d["wasserstein1_over_std"]
        table.add_row(
            name,
            f"{d['ks']:.3f}",
            f"{d['ks_pvalue']:.2g}",
            "-" if w is None else f"{w:.3f}",
            f"{d['mean_sim']:.3f}",
            f"{d['mean_cms']:.3f}",
        )
    console.print(table)
    if "json" in summary:
        console.print(
            f"summary: {summary['json']}"
            + (f"; {len(summary.get('plots', []))} plots" if summary.get("plots") else "")
        )


def print_drift_report(report: dict, console, top: int = 12) -> None:
    """Verdict, flagged fraction and the per-feature drift table of :func:`coffea_hepfm.score.drift.compare`."""
    from rich.table import Table

    verdict = report["verdict"]
    colour = {"ok": "green", "drift": "red"}.get(verdict, "yellow")
    console.print(f"verdict: [bold {colour}]{verdict}[/]  ({report.get('reason', '')})")
    if report.get("ood") is not None:
        o = report["ood"]
        console.print(
            f"out-of-distribution events: {o['flagged']} of {o['events']} flagged = {o['flagged_fraction']:.2%} "
            f"(calibrated to {o['expected_fraction']:.2%} of the training processes' events on "
            f"{o.get('calibration_events', '?')} held-out events)"
        )
    if not report.get("features"):
        return
    table = Table(title=f"input drift, PSI ({report['measure']['bins']}); drifted first")
    table.add_column("feature", no_wrap=True)
    table.add_column("status")
    for col in ("PSI", "p-value", "entries", "mean ref", "mean data"):
        table.add_column(col, justify="right")
    for row in report["features"][:top]:
        colour = {"drift": "red", "moderate": "yellow", "ok": "green"}.get(row["status"], "white")
        table.add_row(
            row["feature"],
            f"[{colour}]{row['status']}[/]",
            "-" if row["psi"] is None else f"{row['psi']:.3f}",
            "-" if row["p_value"] is None else f"{row['p_value']:.2g}",
            str(row["n"]),
            "-" if row["mean_reference"] is None else f"{row['mean_reference']:.3f}",
            "-" if row["mean_data"] is None else f"{row['mean_data']:.3f}",
        )
    console.print(table)
    if report.get("plots"):
        console.print(f"overlays of the most drifted features: {', '.join(report['plots'])}")
