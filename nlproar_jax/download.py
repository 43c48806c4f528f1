"""Fetch the official datasets into the layout the loaders read (needs internet).

    python -m nlproar_jax.download --task sst --data-dir DIR
    python -m nlproar_jax.download --task all --data-dir DIR
    python -m nlproar_jax.download --task imdb --data-dir DIR --archive ~/aclImdb_v1.tar.gz   # no download

Layout written under ``DIR`` (the loaders in :mod:`nlproar_jax.data` read it):

=========  ========================================================  ====================================
task       official archive                                          files written
=========  ========================================================  ====================================
sst        ``trainDevTestTrees_PTB.zip`` (nlp.stanford.edu)          ``sst/{train,dev,test}.txt``
imdb       ``aclImdb_v1.tar.gz`` (ai.stanford.edu)                   ``imdb/{train,test}.jsonl.gz``
snli       ``snli_1.0.zip`` (nlp.stanford.edu)                       ``snli/snli_1.0_{train,dev,test}.jsonl``
babi       ``tasks_1-20_v1-2.tar.gz`` (the original's URL)           ``babi/tasks_1-20_v1-2/{en,en-10k}/qa{1,2,3}_*``
mimic      restricted: only Jain & Wallace's admission lists          ``mimic/{train,dev,test}_50_hadm_ids.csv``
=========  ========================================================  ====================================

IMDB is converted to gzip JSON lines, one ``{"id", "label", "rating", "text"}`` object
per review sorted by (label, review number), the same format as ``../shared/data``.
Archive members are selected by name and written by this module (never
``extractall``), each file atomically.

MIMIC-III is credentialed-access data (PhysioNet): this tool cannot fetch it; it prints
which files to place where.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import re
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from typing import Callable, Optional

SOURCES = {
    "sst": "https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip",
    "imdb": "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
    "snli": "https://nlp.stanford.edu/projects/snli/snli_1.0.zip",
    "babi": "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz",
}
MIMIC_HADM_URL = ("https://raw.githubusercontent.com/successar/AttentionExplanation/master/"
                  "preprocess/MIMIC/{split}_50_hadm_ids.csv")
TASKS = ("sst", "imdb", "snli", "babi", "mimic")
MIMIC_MESSAGE = """\
MIMIC-III is restricted (PhysioNet credentialed access: https://physionet.org/content/mimiciii/).
It cannot be downloaded by this tool. Place your own copies of
  {mdir}/DIAGNOSES_ICD.csv.gz
  {mdir}/NOTEEVENTS.csv.gz
The diabetes admission lists {mdir}/{{train,dev,test}}_50_hadm_ids.csv {lists}.
Word vectors: see `python -m nlproar_jax.data.mimic --help` (the original trains word2vec on the notes)."""


def _write_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _zip_members(archive: str, pattern: str) -> dict[str, bytes]:
    """``{matched group 1: content}`` for members whose name matches ``pattern`` (fullmatch)."""
    out = {}
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            m = re.fullmatch(pattern, name)
            if m:
                out[m.group(1)] = z.read(name)
    return out


def _tar_members(archive: str, pattern: str, on_member: Callable[[re.Match, bytes], None]) -> int:
    n = 0
    with tarfile.open(archive, "r:*") as t:
        for member in t:
            if not member.isfile():
                continue
            m = re.fullmatch(pattern, member.name)
            if m:
                on_member(m, t.extractfile(member).read())
                n += 1
    return n


def _require(found: dict, expected: tuple, archive: str, task: str) -> None:
    missing = [e for e in expected if e not in found]
    if missing:
        raise ValueError(f"{archive} is not the {task} archive the loaders need: members {missing} are missing")


def install_sst(archive: str, data_dir: str) -> list[str]:
    """``trainDevTestTrees_PTB.zip`` -> ``data_dir/sst/{train,dev,test}.txt``."""
    found = _zip_members(archive, r"(?:.*/)?trees/(train|dev|test)\.txt")
    _require(found, ("train", "dev", "test"), archive, "SST")
    paths = []
    for split, data in sorted(found.items()):
        path = os.path.join(data_dir, "sst", f"{split}.txt")
        _write_atomic(path, data)
        paths.append(path)
    return paths


def install_snli(archive: str, data_dir: str) -> list[str]:
    """``snli_1.0.zip`` -> ``data_dir/snli/snli_1.0_{train,dev,test}.jsonl``."""
    found = _zip_members(archive, r"(?:.*/)?snli_1\.0_(train|dev|test)\.jsonl")
    _require(found, ("train", "dev", "test"), archive, "SNLI")
    paths = []
    for split, data in sorted(found.items()):
        path = os.path.join(data_dir, "snli", f"snli_1.0_{split}.jsonl")
        _write_atomic(path, data)
        paths.append(path)
    return paths


def install_imdb(archive: str, data_dir: str) -> list[str]:
    """``aclImdb_v1.tar.gz`` -> ``data_dir/imdb/{train,test}.jsonl.gz`` (labelled reviews only)."""
    rows: dict[str, list] = {"train": [], "test": []}

    def add(m: re.Match, data: bytes) -> None:
        split, cls, review, rating = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{archive}: member {m.group(0)} is not valid UTF-8 ({e.reason})") from None
        label = 1 if cls == "pos" else 0
        rows[split].append((label, review, {"id": f"{split}/{cls}/{review}_{rating}", "label": label,
                                            "rating": rating, "text": text}))

    _tar_members(archive, r"(?:.*/)?aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt", add)
    for split, items in rows.items():
        if not items:
            raise ValueError(f"{archive} is not the aclImdb archive: no {split}/pos or {split}/neg reviews")
    paths = []
    for split, items in rows.items():
        items.sort(key=lambda r: (r[0], r[1]))
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
            for _, _, obj in items:
                gz.write((json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8"))
        path = os.path.join(data_dir, "imdb", f"{split}.jsonl.gz")
        _write_atomic(path, buf.getvalue())
        paths.append(path)
    return paths


def install_babi(archive: str, data_dir: str) -> list[str]:
    """``tasks_1-20_v1-2.tar.gz`` -> tasks 1-3, variants en and en-10k, under ``data_dir/babi/``."""
    paths = []

    def add(m: re.Match, data: bytes) -> None:
        path = os.path.join(data_dir, "babi", "tasks_1-20_v1-2", m.group(1), m.group(2))
        _write_atomic(path, data)
        paths.append(path)

    _tar_members(archive, r"(?:.*/)?tasks_1-20_v1-2/(en|en-10k)/(qa[123]_[a-z-]+_(?:train|test)\.txt)", add)
    if not paths:
        raise ValueError(f"{archive} is not the bAbI v1.2 archive: no tasks_1-20_v1-2/en*/qa1-3 files")
    return sorted(paths)


INSTALLERS = {"sst": install_sst, "imdb": install_imdb, "snli": install_snli, "babi": install_babi}


def fetch(url: str, dest: str, *, timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest`` (atomically)."""
    print(f"downloading {url}", file=sys.stderr)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return dest


def mimic(data_dir: str, *, download_lists: bool = True) -> str:
    mdir = os.path.join(data_dir, "mimic")
    lists = "are public and were fetched"
    if download_lists:
        for split in ("train", "dev", "test"):
            fetch(MIMIC_HADM_URL.format(split=split), os.path.join(mdir, f"{split}_50_hadm_ids.csv"))
    else:
        lists = f"are public: {MIMIC_HADM_URL.format(split='{train,dev,test}')}"
    message = MIMIC_MESSAGE.format(mdir=mdir, lists=lists)
    print(message)
    return message


def run(task: str, data_dir: str, *, archive: Optional[str] = None, keep_archive: bool = False) -> list[str]:
    """Install one task's files; downloads the archive unless ``archive`` is given."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {TASKS + ('all',)}")
    data_dir = os.path.abspath(os.path.expanduser(data_dir))
    if task == "mimic":
        if archive is not None:
            raise ValueError("--archive does not apply to mimic (nothing to unpack)")
        mimic(data_dir)
        return []
    downloaded = None
    if archive is None:
        url = SOURCES[task]
        downloaded = archive = fetch(url, os.path.join(data_dir, "downloads", url.rsplit("/", 1)[1]))
    elif not os.path.exists(archive):
        raise FileNotFoundError(f"archive {archive!r} not found")
    paths = INSTALLERS[task](archive, data_dir)
    if downloaded is not None and not keep_archive:
        os.remove(downloaded)
    for p in paths:
        print(p)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nlproar_jax.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, choices=TASKS + ("all",))
    parser.add_argument("--data-dir", required=True, help="where to write the dataset files")
    parser.add_argument("--archive", help="use this local copy of the official archive instead of downloading")
    parser.add_argument("--keep-archive", action="store_true", help="keep downloaded archives in DIR/downloads")
    args = parser.parse_args(argv)
    if args.task == "all":
        if args.archive:
            parser.error("--archive needs a single --task")
        for task in TASKS:
            run(task, args.data_dir, keep_archive=args.keep_archive)
    else:
        run(args.task, args.data_dir, archive=args.archive, keep_archive=args.keep_archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
