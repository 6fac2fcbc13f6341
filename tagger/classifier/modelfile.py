"""A trained tagger as files that carry no code: `model.npz` (numbers only, read with `allow_pickle=False`)
and `model.json` (parameters, labels, the word vocabulary). Loading them runs nothing but this module, so a
crafted model file can at worst give wrong labels or be refused, never run code. The encoder's weights are
not in these files: they stay in their registry package, named and version-checked (`encoder_identity`).

Every part is checked against the others on loading (array shapes, label sets, feature widths); a file that
does not fit raises `ModelError` naming the part. Integrity (SHA-256) and authenticity (the optional HMAC)
are the registry's job (tagger.classifier.registry).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from tagger.classifier.features import Featurizer
from tagger.classifier.model import EmbeddingBlock, LinearHead, Tagger
from tagger.errors import ModelError
from tagger.labels import TASKS

FORMAT = "mot-tagger-model/2"
ARRAYS_FILE = "model.npz"
SPEC_FILE = "model.json"
FILES = (ARRAYS_FILE, SPEC_FILE)
_HEAD_ARRAYS = ("coef_", "intercept_", "a_", "b_")


def dump(tagger: Tagger, folder: Path) -> None:
    """Write `tagger` into `folder` as model.npz + model.json."""
    fspec, farrays = tagger.featurizer.to_state()
    arrays: dict[str, np.ndarray] = {f"featurizer.{k}": v for k, v in farrays.items()}
    heads: dict[str, dict[str, list[str]]] = {}
    for kind, group in (("full", tagger.heads), ("fast", tagger.fast_heads)):
        heads[kind] = {}
        for task, head in group.items():
            heads[kind][task] = [str(c) for c in head.classes_]
            for name in _HEAD_ARRAYS:
                arrays[f"heads.{kind}.{task}.{name}"] = np.asarray(getattr(head, name))
    embedding = None
    if tagger.embedding is not None:
        embedding = {"weight": tagger.embedding.weight}
        arrays["embedding.mean_"] = tagger.embedding.mean_
        arrays["embedding.scale_"] = tagger.embedding.scale_
    spec = {"format": FORMAT, "featurizer": fspec, "heads": heads, "embedding": embedding,
            "encoder_identity": tagger.encoder_identity, "review_threshold": tagger.review_threshold,
            "stage_prefix": tagger.stage_prefix, "sentiment_prefix": tagger.sentiment_prefix,
            "params": tagger.metadata}
    np.savez_compressed(folder / ARRAYS_FILE, **arrays)
    (folder / SPEC_FILE).write_text(json.dumps(spec, ensure_ascii=False) + "\n", encoding="utf-8")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelError(f"{path}: not a readable array file ({exc})") from exc


def _head(arrays: dict[str, np.ndarray], key: str, classes: list[str], n_features: int, task: str) -> LinearHead:
    try:
        parts = {name: arrays[f"{key}.{name}"] for name in _HEAD_ARRAYS}
    except KeyError as exc:
        raise ModelError(f"model.npz lacks {exc.args[0]}") from None
    k = len(classes)
    if sorted(classes) != sorted(TASKS[task]) or len(set(classes)) != k:
        raise ModelError(f"{key}: labels {classes} are not the {task} labels {list(TASKS[task])}")
    shapes = {"coef_": (k, n_features), "intercept_": (k,), "a_": (k,), "b_": (k,)}
    for name, shape in shapes.items():
        if parts[name].shape != shape or parts[name].dtype.kind != "f":
            raise ModelError(f"{key}.{name}: {parts[name].dtype} array of shape {parts[name].shape}, expected "
                             f"floats of shape {shape}")
    return LinearHead(classes_=np.array(classes), **parts)


def load(folder: Path) -> Tagger:
    """Read model.npz + model.json from `folder` into a Tagger (no pickle anywhere)."""
    try:
        spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelError(f"{folder / SPEC_FILE}: not a readable model description ({exc})") from exc
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ModelError(f"{folder / SPEC_FILE}: format {spec.get('format') if isinstance(spec, dict) else None!r}, "
                         f"expected {FORMAT!r}")
    arrays = _read_arrays(folder / ARRAYS_FILE)
    try:
        featurizer = Featurizer.from_state(spec["featurizer"],
                                           {k.removeprefix("featurizer."): v for k, v in arrays.items()
                                            if k.startswith("featurizer.")})
        embedding = None
        if spec["embedding"] is not None:
            mean, scale = arrays["embedding.mean_"], arrays["embedding.scale_"]
            if mean.ndim != 1 or mean.shape != scale.shape:
                raise ValueError(f"embedding arrays of shapes {mean.shape} and {scale.shape}")
            embedding = EmbeddingBlock(mean_=mean, scale_=scale, weight=float(spec["embedding"]["weight"]))
        n_sparse = featurizer.n_features_
        heads: dict[str, dict[str, LinearHead]] = {}
        for kind, group in spec["heads"].items():
            width = n_sparse + (len(embedding.mean_) if kind == "full" and embedding is not None else 0)
            heads[kind] = {task: _head(arrays, f"heads.{kind}.{task}", classes, width, task)
                           for task, classes in group.items()}
        if set(heads.get("full", {})) != set(TASKS):
            raise ValueError(f"heads for {sorted(heads.get('full', {}))}, expected {sorted(TASKS)}")
        return Tagger(featurizer=featurizer, heads=heads["full"], fast_heads=heads.get("fast", {}),
                      embedding=embedding, encoder_identity=spec["encoder_identity"],
                      review_threshold=float(spec["review_threshold"]), stage_prefix=str(spec["stage_prefix"]),
                      sentiment_prefix=str(spec["sentiment_prefix"]), metadata=dict(spec.get("params") or {}))
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{folder}: model files do not fit together ({type(exc).__name__}: {exc})") from exc


