"""The one dataset loader behind ``forgeflow quantize|search|federate --data``.

A source is one of:

* ``None`` or ``"digits"``: scikit-learn's digits (shipped with the package, no download): 1,797 grey 8x8 images as
  float32 N x 1 x 8 x 8 in [0, 1], split stratified by label;
* ``PATH.npz``: numeric array ``x`` (N x ..., e.g. N x C x H x W or N x D) and integer array ``y`` (N,) of labels
  >= 0; when it also holds ``x_test`` and ``y_test`` those are the test split, used as given;
* ``PATH.parquet``: an integer column ``y`` (labels >= 0) and the features either in one list column ``x`` (each row
  the example's features, flattened) or, without an ``x`` column, in every other column (numeric, one feature per
  column, in file order).

Without a given test split, ``test_fraction`` of the rows (at least one) are held out by a permutation drawn from
``seed``. Anything else (missing file, other suffix, missing array or column, object arrays, non-numeric or
non-finite features, negative or fractional labels, mismatched lengths, an unreadable file) raises ``DatasetError``
with one line naming the file and what is wrong. Arrays are returned as numpy (float32 features, int64 labels);
each domain shapes them for its models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forgeflow.tasks.errors import ForgeflowError

DIGITS = "digits"
LABEL_COLUMN = "y"
FEATURES_COLUMN = "x"
SUFFIXES = (".npz", ".parquet", ".pq")


class DatasetError(ForgeflowError):
    """A dataset that cannot be used (missing, malformed, wrong shapes)."""


@dataclass(frozen=True)
class Dataset:
    """A labelled data set split into train and test parts (numpy; float32 features, int64 labels)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def is_digits(source: str | Path | None) -> bool:
    return source is None or str(source) in ("", DIGITS)


def load_dataset(source: str | Path | None, seed: int = 0, test_fraction: float = 0.25, *,
                 min_rows: int = 2) -> Dataset:
    """Load ``source`` (see the module docstring) and split it; ``min_rows`` is the fewest rows a file may hold."""
    if is_digits(source):
        return _digits(seed, test_fraction)
    path = Path(source)
    x, y, x_test, y_test = read_arrays(path)
    if x_test is not None:
        if len(x) < 1:
            raise DatasetError(f"dataset {path}: the training split is empty")
        return Dataset(path.stem, x, y, x_test, y_test)
    if len(x) < max(2, min_rows):
        raise DatasetError(f"dataset {path} has {len(x)} rows; at least {max(2, min_rows)} are needed")
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = min(len(y) - 1, max(1, int(round(test_fraction * len(y)))))
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset(path.stem, x[tr], y[tr], x[te], y[te])


def read_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(x, y, x_test, y_test)`` from a ``.npz`` or Parquet file, checked (the test pair is None when absent)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}")
    if path.suffix == ".npz":
        arrays = _read_npz(path)
    elif path.suffix in (".parquet", ".pq"):
        arrays = {"x": None, "y": None}
        arrays["x"], arrays["y"] = _read_parquet(path)
    else:
        raise DatasetError(f"dataset {path}: expected digits, a .npz (arrays x, y) or a .parquet file "
                           f"(column y plus features), not {path.suffix or 'a file without a suffix'}")
    x, y = _checked(path, "x", "y", arrays["x"], arrays["y"])
    if arrays.get("x_test") is None:
        return x, y, None, None
    x_test, y_test = _checked(path, "x_test", "y_test", arrays["x_test"], arrays["y_test"])
    if x_test.shape[1:] != x.shape[1:]:
        raise DatasetError(f"dataset {path}: x_test rows have shape {x_test.shape[1:]}, x rows {x.shape[1:]}")
    return x, y, x_test, y_test


def _digits(seed: int, test_fraction: float) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = data.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return Dataset(DIGITS, xtr, ytr, xte, yte)


def _read_npz(path: Path) -> dict[str, np.ndarray | None]:
    import zipfile

    if not zipfile.is_zipfile(path):
        raise DatasetError(f"dataset {path} is not a readable .npz: not a zip archive (write it with numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as f:
            names = set(f.files)
            missing = [k for k in ("x", "y") if k not in names]
            if missing:
                found = ", ".join(sorted(names)) or "no arrays"
                raise DatasetError(f"dataset {path}: the .npz needs arrays x and y; missing {', '.join(missing)} "
                                   f"(found {found})")
            out = {k: f[k] for k in ("x", "y")}
            if ("x_test" in names) != ("y_test" in names):
                raise DatasetError(f"dataset {path}: x_test and y_test must come together")
            out.update({k: f[k] if k in names else None for k in ("x_test", "y_test")})
            return out
    except DatasetError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DatasetError(f"dataset {path}: holds object (pickled) arrays; x and y must be numeric") from None
        raise DatasetError(f"dataset {path} is not a readable .npz: {_first_line(exc)}") from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError, ...
        raise DatasetError(f"dataset {path} is not a readable .npz: {_first_line(exc)}") from None


def _read_parquet(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # ArrowInvalid on an empty or corrupt file, OSError, ...
        raise DatasetError(f"dataset {path} is not a readable Parquet file: {_first_line(exc)}") from None
    names = table.column_names
    if LABEL_COLUMN not in names:
        raise DatasetError(f"dataset {path}: Parquet needs an integer label column '{LABEL_COLUMN}' "
                           f"(found {', '.join(names) or 'no columns'})")
    y = table.column(LABEL_COLUMN).to_numpy(zero_copy_only=False)
    if FEATURES_COLUMN in names:
        col = table.column(FEATURES_COLUMN)
        if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
                or pa.types.is_fixed_size_list(col.type)):
            raise DatasetError(f"dataset {path}: column '{FEATURES_COLUMN}' must be a list of numbers per row, "
                               f"not {col.type}")
        rows = col.to_pylist()
        if any(r is None for r in rows) or len({len(r) for r in rows}) > 1:
            raise DatasetError(f"dataset {path}: column '{FEATURES_COLUMN}' rows must all hold the same number of "
                               "values")
        try:
            x = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError):
            raise DatasetError(f"dataset {path}: column '{FEATURES_COLUMN}' must hold numbers") from None
        return x, y
    cols = [c for c in names if c != LABEL_COLUMN]
    if not cols:
        raise DatasetError(f"dataset {path}: no feature columns besides '{LABEL_COLUMN}' (give a list column "
                           f"'{FEATURES_COLUMN}' or one numeric column per feature)")
    bad = [c for c in cols if not (pa.types.is_integer(table.column(c).type)
                                   or pa.types.is_floating(table.column(c).type))]
    if bad:
        raise DatasetError(f"dataset {path}: feature column(s) {', '.join(bad[:5])} are not numeric")
    x = np.stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in cols], axis=1)
    return x, y


def _checked(path: Path, xn: str, yn: str, x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype.kind not in "biuf" or x.ndim < 2:
        raise DatasetError(f"dataset {path}: {xn} must be a numeric array N x ... (got dtype {x.dtype}, "
                           f"shape {x.shape})")
    if y.ndim != 1 or len(x) != len(y):
        raise DatasetError(f"dataset {path}: {xn} has {len(x)} rows and {yn} shape {y.shape}; need N rows and (N,)")
    if len(y) == 0:
        raise DatasetError(f"dataset {path}: {yn} is empty")
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu" or y.min() < 0:
        raise DatasetError(f"dataset {path}: {yn} labels must be non-negative integers")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DatasetError(f"dataset {path}: {xn} holds NaN or infinite values")
    return x, y.astype(np.int64)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
