"""Seed robustness: how much of Table 1 is the seed?

The study ran every LoRA run and every probe with one seed, the authors' 42. Here each is
repeated per seed of ``Profile.seeds``: the runs of seed s are the bundles
``<scope>-<captions>_s<s>`` (the profile's own seed keeps the plain tags,
``radioalign.study.bundles``), and every bundle of seed s, the frozen model's included, is
evaluated as Table 1 evaluates it with ``seed = s`` (probe initialisation and bootstrap
resamples). Then, per model, caption set, metric and modality:

* **spread** (:func:`seed_summary`): the value at the profile's seed beside the mean and
  the sample standard deviation (ddof 1) over the seeds;
* **paired test** (:func:`paired_seed_tests`): the curated − control difference of each
  seed, d_s = value(curated, s) − value(control, s); its mean and standard deviation over
  the seeds and the paired t-test (``scipy.stats.ttest_rel``) of curated against control,
  t = mean(d) / (sd(d) / sqrt(k)) with k − 1 degrees of freedom for k seeds. With two seeds
  (one degree of freedom) the test is uninformative: t = |d_1 + d_2| / |d_1 − d_2| must pass
  12.7 for p < 0.05, i.e. the two differences must agree to within about a sixth of their mean.
  ``p_holm``: the Holm-adjusted p over the family of Table 1's cells with a test (the rows of
  ``tables.TABLE1_ROWS`` for every model), so that a small p among many is not read as a
  finding; other rows keep only their raw p.

What the test measures: the test items and the captions are fixed and only the training
seed (LoRA initialisation, batch order, validation split, probe initialisation and the
bootstrap resamples) varies, so a small p says a curated − control difference survives a
change of seed (seed robustness), not that curated captions help in general. The spread is
reported as mean ± sd over the seeds ("0.91 ± 0.02 sd, 5 seeds"), never in the
``[low, high]`` form of the bootstrap intervals.

The frozen model has no training seed: its retrieval rows are the same for every seed and
only its probes vary. Rows: ``ROW_COLUMNS`` plus ``seed`` and ``variant`` (``paired``: true
training pairs), with per seed the paired-bootstrap difference rows ``curated-control`` as
in metrics.csv; written to ``results/<profile>/controls/seeds.csv``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..provenance import write_stamp
from .bundles import FROZEN, available_bundles, caption_sets, load_bundle, parse_tag, seed_tags
from .evaluation import ROW_COLUMNS, evaluate_bundle
from .controls import controls_dir
from .layout import results_dir
from .pairs import PAIRED
from .tables import BASELINE, COLUMNS, TABLE1_ROWS, paired_differences


if TYPE_CHECKING:  # annotations only: importing profiles loads the model (and torch)
    from .profiles import Profile

SEED_COLUMNS = ROW_COLUMNS + ["seed", "variant"]
KEY = ["model", "captions", "metric", "modality"]


def seed_bundles(profile: Profile, seed: int) -> dict[str, Path]:
    """``{tag: path}`` of the final models of one seed that are present: ``frozen`` and each
    of the profile's runs trained with ``seed``."""
    have = available_bundles(results_dir(profile), controls=True)
    return {t: have[t] for t in seed_tags(profile.scopes, profile.prompts, seed, profile.seed) if t in have}


def seed_metrics(profile: Profile, *, bootstrap: int | None = None, protocols: Sequence[str] = ("paper",), progress: bool = False) -> pd.DataFrame:
    """Every seed's Table 1 rows (columns :data:`SEED_COLUMNS`): each bundle of
    :func:`seed_bundles` evaluated with the captions it was trained on (frozen: each of the
    profile's caption sets) at ``seed = s``, and per seed the ``<c>-control`` paired
    differences. ``bootstrap``: the profile's when None."""
    from tqdm.auto import tqdm

    bootstrap = profile.bootstrap if bootstrap is None else bootstrap
    frames = []
    for seed in tqdm(profile.seeds, desc="seeds", disable=not progress):
        evaluated, names = [], {}
        for tag_, path in seed_bundles(profile, seed).items():
            info, bundle = parse_tag(tag_), load_bundle(path)
            names[tag_] = tuple(np.asarray(bundle["names_test"]).tolist()) if "names_test" in bundle else None
            sets = [c for c in caption_sets(bundle) if c in profile.prompts] if info.scope == FROZEN else [info.captions]
            evaluated += [evaluate_bundle(bundle, c, tag=tag_, bootstrap=bootstrap, seed=int(seed), protocols=protocols,
                                          return_replicates=True) for c in sets]  # fmt: skip
        if not evaluated:
            continue
        df = pd.concat(evaluated, ignore_index=True)
        diffs = paired_differences(df, names, baseline=BASELINE)
        frames.append(pd.concat([f for f in (df, diffs) if len(f)], ignore_index=True).assign(seed=int(seed), variant=PAIRED))
    if not frames:
        return pd.DataFrame(columns=SEED_COLUMNS)
    return pd.concat(frames, ignore_index=True)[SEED_COLUMNS]


def seed_summary(frame: pd.DataFrame, base_seed: int) -> pd.DataFrame:
    """Per model, caption set, metric and modality: ``base`` (the value at ``base_seed``),
    ``mean``, ``sd`` (ddof 1; NaN for one seed), ``k`` (seeds), ``min`` and ``max``."""
    if frame.empty:
        return pd.DataFrame(columns=[*KEY, "base", "mean", "sd", "k", "min", "max"])
    grouped = frame.groupby(KEY, sort=False)["value"]
    out = grouped.agg(mean="mean", sd=lambda v: v.std(ddof=1) if len(v) > 1 else np.nan, k="count", min="min", max="max")
    base = frame[frame["seed"] == base_seed].set_index(KEY)["value"]
    out.insert(0, "base", base.reindex(out.index))
    return out.reset_index()


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries are not in the family):
    sorted ascending, ``p_(j) * (m - j + 1)`` (j from 1), made non-decreasing, capped at 1."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    order = present[np.argsort(p[present], kind="stable")]
    m = len(order)
    running = 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, p[i] * (m - j)))
        out[i] = running
    return out


def _seed_test(g: pd.DataFrame, captions: str, baseline: str) -> dict:
    """One cell's paired test across the seeds in ``g`` (columns ``captions`` and ``baseline``)."""
    from scipy.stats import ttest_rel

    d = (g[captions] - g[baseline]).to_numpy()
    row = dict(k=len(d), mean_diff=d.mean() if len(d) else np.nan, sd_diff=d.std(ddof=1) if len(d) > 1 else np.nan,
               t=np.nan, p=np.nan, note="")  # fmt: skip
    if len(d) < 2:
        row["note"] = "one seed: no test"
    elif np.allclose(d, d[0]):
        row["note"] = "the same difference at every seed: no spread to test"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = ttest_rel(g[captions], g[baseline])
        row.update(t=float(result.statistic), p=float(result.pvalue))
        row["note"] = "2 seeds (1 degree of freedom): uninformative" if len(d) == 2 else ""
    return row


TEST_COLUMNS = ["model", "metric", "modality", "k", "mean_diff", "sd_diff", "t", "p", "p_holm", "note"]


def paired_seed_tests(frame: pd.DataFrame, captions: str = "curated", baseline: str = BASELINE, family=None) -> pd.DataFrame:
    """The paired t-test across seeds of ``captions`` against ``baseline`` per model, metric
    and modality (module docstring): ``k`` seeds with both, ``mean_diff``, ``sd_diff``, ``t``,
    ``p``, ``p_holm`` (Holm over the tests whose (metric, modality) is in ``family``, Table 1's
    rows by default) and a ``note`` (why a test is missing or uninformative)."""
    family = set(TABLE1_ROWS.values()) if family is None else set(family)
    values = frame[frame["captions"].isin([captions, baseline])]
    wide = values.pivot_table(index=["model", "metric", "modality", "seed"], columns="captions", values="value")
    rows = []
    for (model, metric, modality), g in wide.groupby(level=[0, 1, 2], sort=False):
        if captions in g and baseline in g:
            rows.append(dict(model=model, metric=metric, modality=modality,
                             **_seed_test(g[[captions, baseline]].dropna(), captions, baseline)))  # fmt: skip
    out = pd.DataFrame(rows, columns=[c for c in TEST_COLUMNS if c != "p_holm"])
    in_family = [(m, d) in family for m, d in zip(out["metric"], out["modality"])]
    out.insert(8, "p_holm", holm(out["p"].where(in_family)) if len(out) else [])
    return out[TEST_COLUMNS]


# ------------------------------------------------------------------------------ the table


def _fmt(x: float, digits: int = 2) -> str:
    return "–" if pd.isna(x) else f"{x:.{digits}f}"


def _cell(summary: pd.DataFrame, model: str, captions: str, metric: str, modality: str, signed: bool = False) -> str:
    hit = summary[(summary["model"] == model) & (summary["captions"] == captions) & (summary["metric"] == metric)
                  & (summary["modality"] == modality)]  # fmt: skip
    if hit.empty:
        return "–"
    r = hit.iloc[0]
    fmt = (lambda x: "–" if pd.isna(x) else f"{x:+.2f}") if signed else _fmt
    spread = f"{fmt(r['mean'])} ± {_fmt(r['sd'])} sd, {int(r['k'])} seeds" if r["k"] > 1 else "one seed"
    return f"{fmt(r['base'])} · {spread}"


def seeds_markdown(frame: pd.DataFrame, base_seed: int, captions: str = "curated", baseline: str = BASELINE, *,
                   rows: dict | None = None, note: str = "") -> str:
    """The seed-robustness table: Table 1's cells for ``captions`` as "value at ``base_seed`` ·
    mean ± sd over the seeds", then the same for ``captions`` − ``baseline`` with the paired
    t-test's raw p and its Holm-adjusted p."""
    rows = TABLE1_ROWS if rows is None else rows
    summary = seed_summary(frame, base_seed)
    tests = paired_seed_tests(frame, captions, baseline).set_index(["model", "metric", "modality"])
    seeds = list(dict.fromkeys(int(x) for x in frame["seed"])) if len(frame) else []
    head = "| metric | " + " | ".join(COLUMNS.values()) + " |\n| --- |" + " --- |" * len(COLUMNS)
    out = [f"**Seed robustness, {captions} captions: the value at seed {base_seed} · mean ± sd over seeds {seeds}**",
           "", head]  # fmt: skip
    for label, (metric, modality) in rows.items():
        out.append(f"| {label} | " + " | ".join(_cell(summary, m, captions, metric, modality) for m in COLUMNS) + " |")
    out += ["", f"**Seed robustness, {captions} − {baseline}: at seed {base_seed} · mean ± sd over the seeds; "
            "p of the paired t-test across seeds, raw and Holm-adjusted**", "", head]  # fmt: skip
    diff = f"{captions}-{baseline}"
    for label, (metric, modality) in rows.items():
        cells = []
        for m in COLUMNS:
            cell = _cell(summary, m, diff, metric, modality, signed=True)
            p, ph = tests["p"].get((m, metric, modality), np.nan), tests["p_holm"].get((m, metric, modality), np.nan)
            cells.append(cell + (f" (p {p:.2f}, Holm {ph:.2f})" if not pd.isna(p) else ""))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    k = len(seeds)
    caveat = (" With 2 seeds the t-test has one degree of freedom and is uninformative." if k == 2 else
              " With one seed there is no spread and no test." if k < 2 else "")  # fmt: skip
    m = int(tests["p_holm"].notna().sum())
    out += ["", f"Each seed retrains every LoRA run and reruns every probe and bootstrap with that seed; the frozen "
            f"model's retrieval does not depend on the seed. The test items and captions stay fixed, so a small p "
            f"says a difference survives a change of seed (seed robustness), not that one caption set is better in "
            f"general. Holm: adjusted over the {m} tests of this table.{caveat}" + (f" {note}" if note else "")]  # fmt: skip
    return "\n".join(out) + "\n"


def write_seed_outputs(frame: pd.DataFrame, profile: Profile) -> dict[str, Path]:
    """``controls/seeds.csv`` (the per-seed rows), ``controls/seeds.md`` (the table) and, under
    ``controls/seeds/``, ``summary.csv`` and ``paired_tests.csv``; each with a stamp."""
    folder = controls_dir(results_dir(profile))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seeds").mkdir(exist_ok=True)
    paths = {"seeds.csv": folder / "seeds.csv", "seeds.md": folder / "seeds.md",
             "summary.csv": folder / "seeds" / "summary.csv", "paired_tests.csv": folder / "seeds" / "paired_tests.csv"}  # fmt: skip
    frame[SEED_COLUMNS].to_csv(paths["seeds.csv"], index=False, float_format="%.6f")
    seed_summary(frame, profile.seed).to_csv(paths["summary.csv"], index=False, float_format="%.6f")
    paired_seed_tests(frame).to_csv(paths["paired_tests.csv"], index=False, float_format="%.6f")
    paths["seeds.md"].write_text(seeds_markdown(frame, profile.seed, note=profile.note))
    for path in paths.values():
        write_stamp(path, profile=profile)
    return paths
