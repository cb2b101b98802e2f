"""What other kinds of model reach on the test rows ``bench/search_quality.py`` judges the search on.

For wine and breast cancer and each seed, the studio's own split (``stratified_split``, the default 15%
validation and 15% test shares) gives the test rows; each scikit-learn model trains on all the other
rows (settings chosen by 5-fold cross-validation on them where the model has a grid) and is scored on
the test rows. Prints the accuracies per seed and their mean, beside the search benchmark's goals. It
tells whether a goal is within reach of a well-tuned model on these few test rows at all.

    python bench/search_references.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOALS = {"wine": 0.98, "breast_cancer": 0.975}


def models() -> dict[str, object]:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    grid = {"svc__C": [0.1, 0.3, 1, 3, 10, 30], "svc__gamma": ["scale", 0.01, 0.03, 0.1]}
    return {
        "logistic regression (20 C, 5-fold CV)": lambda: make_pipeline(
            StandardScaler(), LogisticRegressionCV(Cs=20, cv=5, max_iter=5000)
        ),
        "RBF SVM (grid, 5-fold CV)": lambda: GridSearchCV(make_pipeline(StandardScaler(), SVC()), grid, cv=5),
        "histogram gradient boosting": lambda: HistGradientBoostingClassifier(random_state=0),
        "random forest (500 trees)": lambda: RandomForestClassifier(500, random_state=0, n_jobs=1),
    }


def main() -> int:
    import numpy as np
    from sklearn.datasets import load_breast_cancer, load_wine

    from lightning_modules.tabular.data import stratified_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a tiny size that runs in seconds (what the tests run, so the benchmark never rots)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    samples = (("wine", load_wine), ("breast_cancer", load_breast_cancer))
    if args.tiny:  # one seed, one sample, the quick models
        args.seeds, samples = [0], samples[:1]
    for sample, loader in samples:
        x, y = loader(return_X_y=True)
        print(f"{sample} (goal {GOALS[sample]})")
        for name, make in models().items():
            if args.tiny and ("SVM" in name or "forest" in name):
                continue
            scores = []
            for seed in args.seeds:
                train, val, test = stratified_split(y, len(y), 0.15, 0.15, seed)
                rows = np.concatenate([train, val])
                scores.append(make().fit(x[rows], y[rows]).score(x[test], y[test]))
            shown = " / ".join(f"{score:.4f}" for score in scores)
            print(f"  {name:<40} {shown}   mean {statistics.mean(scores):.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
