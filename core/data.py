"""Collections: frames, validators and loaders.

A :class:`Collection` holds four tidy frames with the project's column vocabulary (pyterrier's):
docs ``[docno, title, text]``, queries ``[qid, text]``, qrels ``[qid, docno, relevance]`` and,
optionally, a run ``[qid, docno, score, rank]``. Every loader validates at the boundary: a
malformed line either raises :class:`InputError` naming file, line and problem (``strict``), or
is skipped and counted in ``Collection.skipped`` so the UI and CLI can show the count.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.errors import InputError

DOC_COLUMNS = ["docno", "title", "text"]
QUERY_COLUMNS = ["qid", "text"]
QREL_COLUMNS = ["qid", "docno", "relevance"]
RUN_COLUMNS = ["qid", "docno", "score", "rank"]
MAX_TEXT_CHARS = 200_000  # a longer "document" is almost certainly a broken file
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
CRANFIELD_DIR = SHARED_DATA / "cranfield"
# Collections offered by name when their folder is beside the project, with the lowest grade
# that counts as relevant for binary measures (MRR, recall, F1). TREC DL: grade >= 2 ("highly
# relevant"), the track's rule (Craswell et al., TREC DL 2019 overview, §3); Cranfield's
# grades 1-4 are all degrees of relevance.
NAMED_FOLDERS: dict[str, tuple[Path, int]] = {
    "cranfield": (CRANFIELD_DIR, 1),
    "trec-dl-2019": (SHARED_DATA / "trec-dl-2019", 2),
    "trec-dl-2020": (SHARED_DATA / "trec-dl-2020", 2),
    "trec-dl-2021": (SHARED_DATA / "trec-dl-2021", 2),
    "trec-dl-2022": (SHARED_DATA / "trec-dl-2022", 2),  # no judgments: unlabelled text
}
COLLECTION_SETTINGS = "collection.json"  # optional in a folder: {"relevance_threshold": 2}


@dataclass
class Collection:
    """A test collection. ``skipped`` maps a problem description to how many lines had it."""

    name: str
    docs: pd.DataFrame
    queries: pd.DataFrame
    qrels: pd.DataFrame
    run: pd.DataFrame | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    min_relevant: int = 1  # lowest grade that counts as relevant for binary measures (MRR, F1)
    run_name: str = ""  # the run file the candidates come from ("" = BM25 top-k by bm25s)
    run_is_bm25: bool = False  # the run file is a BM25 run (its tag column says so)

    def qids(self, split: str | None, required: bool = False) -> list[str] | None:
        """Query ids of ``split`` in collection order, or None (every query) when ``split`` is
        None or the collection has no splits — unless ``required``, when a split asked of a
        collection without splits is an error (the user typed it). A split the collection
        does not have is always an error naming the ones it has."""
        if split is None:
            return None
        if "split" not in self.queries:
            if required:
                raise InputError(f"collection {self.name!r} has no query splits; drop --split")
            return None
        qids = self.queries[self.queries["split"] == split].qid.tolist()
        if not qids:  # a split the collection lacks is a typo, never "no query at all"
            found = ", ".join(sorted(map(str, self.queries["split"].dropna().unique())))
            raise InputError(f"collection {self.name!r} has no query in split {split!r} "
                             f"(its splits: {found})")
        return qids

    @property
    def judged(self) -> bool:
        """Whether the collection has relevance judgments (TREC DL 2022 here has none)."""
        return len(self.qrels) > 0

    def require_judgments(self, what: str) -> None:
        """Refuse, in one sentence, work that needs judgments on a collection without any."""
        if not self.judged:
            raise InputError(f"{self.name} has no relevance judgments (no qrels file), so it "
                             f"cannot give {what}; use a judged collection (e.g. trec-dl-2021) "
                             "or give its qrels file")

    @property
    def candidates_label(self) -> str:
        """Where re-ranked candidates come from, e.g. ``run.txt`` or ``BM25``."""
        return self.run_name if self.run is not None and self.run_name else "BM25"

    @property
    def content_hash(self) -> str:
        """SHA-256 over the frames' contents: the collection part of every store key."""
        digest = hashlib.sha256()
        for frame in (self.docs, self.queries, self.qrels, self.run):
            if frame is None:
                digest.update(b"<none>")
                continue
            digest.update(pd.util.hash_pandas_object(frame, index=False).values.tobytes())
            digest.update(",".join(map(str, frame.columns)).encode())
        return digest.hexdigest()[:16]

    def stats(self) -> dict[str, int | float]:
        judged = self.qrels[self.qrels.relevance > 0]
        lengths = self.docs.text.str.split().str.len()
        return {
            "documents": len(self.docs),
            "queries": len(self.queries),
            "judgments": len(self.qrels),
            "relevant judgments": len(judged),
            "queries with a relevant doc": judged.qid.nunique(),
            "mean doc length (words)": round(float(lengths.mean()), 1) if len(lengths) else 0.0,
            "relevant from grade": self.min_relevant,
            "run queries": int(self.run.qid.nunique()) if self.run is not None else 0,
            "skipped lines": sum(self.skipped.values()),
        }


def _skip_or_raise(strict: bool, skipped: dict[str, int], where: str, problem: str) -> None:
    if strict:
        raise InputError(f"{where}: {problem}")
    skipped[problem.split(":")[0]] = skipped.get(problem.split(":")[0], 0) + 1


def read_text_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 file (BOM tolerated). Non-UTF-8 bytes raise with the line number."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as error:
            raise InputError(
                f"{path} line {number}: not valid UTF-8 (byte {error.start + 1} of the line); "
                "re-save the file as UTF-8") from None
    return out


def check_user_text(what: str, text: str) -> None:
    """Refuse a typed or passed query/document that cannot be scored, naming which one."""
    problem = _check_text(text)
    if problem:
        raise InputError(f"the {what} is unusable: {problem}")


def _check_text(text: str) -> str | None:
    """Why a query/document text is unusable, or None."""
    if not text.strip():
        return "empty text"
    if len(text) > MAX_TEXT_CHARS:
        return f"text longer than {MAX_TEXT_CHARS:,} characters"
    if "\x00" in text:
        return "binary content (NUL bytes)"
    return None


def _read_records(path: str | Path, fields: list[str], parse, *, separator: str | None,
                  strict: bool, skipped: dict[str, int] | None) -> list:
    """Shared line loop: split, check the field count, ``parse(parts)`` → row or problem text.

    Tab-separated lines split at their first ``len(fields) − 1`` tabs only: the last field (a
    passage or query text) runs to the end of the line, tabs and all — tables copied from web
    pages hold tabs, and such a passage must not go missing."""
    skipped = {} if skipped is None else skipped
    kind = "tab-separated fields" if separator == "\t" else "fields"
    most = len(fields) - 1 if separator == "\t" else -1
    rows = []
    for number, line in enumerate(read_text_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.split(separator, most)
        where = f"{path} line {number}"
        if len(parts) != len(fields):
            _skip_or_raise(strict, skipped, where,
                           f"wrong field count: expected {len(fields)} {kind} "
                           f"({' '.join(fields)}), got {len(parts)}")
            continue
        row = parse(parts)
        if isinstance(row, str):
            _skip_or_raise(strict, skipped, where, row)
            continue
        rows.append(row)
    return rows


def read_tsv(path: str | Path, columns: list[str], *, strict: bool = True,
             skipped: dict[str, int] | None = None) -> pd.DataFrame:
    """A headerless TSV with exactly ``len(columns)`` fields a line (MS MARCO style)."""

    def parse(parts):
        return _check_text(parts[-1]) or [p.strip() for p in parts]

    rows = _read_records(path, columns, parse, separator="\t", strict=strict, skipped=skipped)
    return pd.DataFrame(rows, columns=columns, dtype=str)


def read_trec_qrels(path: str | Path, *, strict: bool = True,
                    skipped: dict[str, int] | None = None) -> pd.DataFrame:
    """TREC qrels: ``qid iter docno relevance`` separated by whitespace."""

    def parse(parts):
        try:
            return parts[0], parts[2], int(parts[3])
        except ValueError:
            return f"relevance is not an integer: {parts[3]!r}"

    rows = _read_records(path, ["qid", "iter", "docno", "relevance"], parse, separator=None,
                         strict=strict, skipped=skipped)
    return pd.DataFrame(rows, columns=QREL_COLUMNS).astype({"relevance": "int64"})


def read_trec_run(path: str | Path, *, strict: bool = True,
                  skipped: dict[str, int] | None = None) -> pd.DataFrame:
    """TREC run: ``qid Q0 docno rank score tag``."""

    def parse(parts):
        try:
            rank, score = int(parts[3]), float(parts[4])
        except ValueError:
            return "rank or score is not a number"
        if math.isnan(score) or math.isinf(score):
            return f"score is not finite: {parts[4]}"
        return parts[0], parts[2], score, rank

    rows = _read_records(path, ["qid", "Q0", "docno", "rank", "score", "tag"], parse,
                         separator=None, strict=strict, skipped=skipped)
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def read_trec_topics(path: str | Path) -> pd.DataFrame:
    """TREC topic files (``<top><num> … <title> …``); the title field is the query text."""
    text = "\n".join(read_text_lines(path))
    rows = []
    for block in text.split("<top>")[1:]:
        number = block.split("<num>")[1].split("<")[0] if "<num>" in block else ""
        qid = number.replace("Number:", "").strip()
        title = block.split("<title>")[1].split("<")[0] if "<title>" in block else ""
        title = title.replace("Topic:", "").strip()
        if not qid or not title:
            raise InputError(f"{path}: a <top> block lacks <num> or <title> (topic {qid or '?'})")
        rows.append((qid, title))
    if not rows:
        raise InputError(f"{path}: no <top> blocks found; is this a TREC topics file?")
    return pd.DataFrame(rows, columns=QUERY_COLUMNS)


def read_jsonl(path: str | Path, fields: dict[str, tuple[str, ...]], *, strict: bool = True,
               skipped: dict[str, int] | None = None) -> pd.DataFrame:
    """JSON lines. ``fields`` maps each output column to the accepted input keys."""
    skipped = {} if skipped is None else skipped
    rows = []
    for number, line in enumerate(read_text_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            _skip_or_raise(strict, skipped, where, f"invalid JSON: {error.msg}")
            continue
        if not isinstance(record, dict):
            _skip_or_raise(strict, skipped, where, "invalid JSON: expected an object")
            continue
        row = {}
        for column, keys in fields.items():
            value = next((record[k] for k in keys if k in record), None)
            if value is None and column != "title":
                _skip_or_raise(strict, skipped, where,
                               f"missing field: needs one of {', '.join(keys)}")
                break
            row[column] = "" if value is None else str(value)
        else:
            problem = _check_text(row["text"])
            if problem:
                _skip_or_raise(strict, skipped, where, problem)
                continue
            rows.append(row)
    return pd.DataFrame(rows, columns=list(fields), dtype=str)


DOC_JSON_FIELDS = {"docno": ("docno", "doc_id", "_id", "id"), "title": ("title",),
                   "text": ("text", "body", "contents")}
QUERY_JSON_FIELDS = {"qid": ("qid", "query_id", "_id", "id"), "text": ("text", "query")}


def validate(collection: Collection, *, strict: bool = True) -> Collection:
    """Check ids are unique and qrels/runs name known queries and documents.

    In strict mode the first problem raises; otherwise offending rows are dropped and counted.
    """
    skipped = collection.skipped
    name = collection.name
    for frame, key, what in ((collection.docs, "docno", "document"),
                             (collection.queries, "qid", "query")):
        duplicated = frame[key][frame[key].duplicated()]
        if len(duplicated):
            if strict:
                raise InputError(f"{name}: duplicate {what} id {duplicated.iloc[0]!r} "
                                 f"({len(duplicated)} duplicates); ids must be unique")
            skipped[f"duplicate {what} id"] = skipped.get(f"duplicate {what} id", 0) + len(duplicated)
    docs = collection.docs.drop_duplicates("docno").reset_index(drop=True)
    queries = collection.queries.drop_duplicates("qid").reset_index(drop=True)
    empty_docs = docs.text.fillna("").str.strip() == ""
    if empty_docs.any():
        # Empty documents exist in real collections (two in Cranfield): keep the id, skip the row.
        skipped["empty document text"] = skipped.get("empty document text", 0) + int(empty_docs.sum())
        docs = docs[~empty_docs].reset_index(drop=True)
    known_q, known_d = set(queries.qid), set(docs.docno)

    def _filter(frame: pd.DataFrame | None, what: str) -> pd.DataFrame | None:
        if frame is None:
            return None
        unknown_q = ~frame.qid.isin(known_q)
        unknown_d = ~frame.docno.isin(known_d)
        if strict and unknown_q.any():
            raise InputError(f"{name}: {what} name unknown query id {frame.qid[unknown_q].iloc[0]!r} "
                             f"({int(unknown_q.sum())} lines); check the queries file")
        if unknown_q.any():
            skipped[f"{what} with unknown query id"] = int(unknown_q.sum())
        if unknown_d.any():
            skipped[f"{what} with unknown or empty document"] = int((unknown_d & ~unknown_q).sum())
        return frame[~unknown_q & ~unknown_d].reset_index(drop=True)

    if "relevance" in collection.qrels and (collection.qrels.relevance < 0).any() and strict:
        bad = collection.qrels[collection.qrels.relevance < 0].iloc[0]
        raise InputError(f"{name}: qrels give a negative grade ({bad.relevance}) for query "
                         f"{bad.qid!r}, document {bad.docno!r}; grades must be ≥ 0")
    qrels = _filter(collection.qrels, "qrels")
    negative = int((qrels.relevance < 0).sum())
    if negative:  # some TREC tracks grade junk −1 / −2: counted, not used
        skipped["qrels with a negative grade"] = negative
    qrels = qrels[qrels.relevance >= 0]
    repeated = int(qrels.duplicated(["qid", "docno"], keep="last").sum())
    if repeated:
        skipped["qrels repeating a (query, document) pair (last kept)"] = repeated
    qrels = qrels.drop_duplicates(["qid", "docno"], keep="last")
    run = _filter(collection.run, "run")
    if len(queries) == 0:
        raise InputError(f"{name}: no usable queries")
    if len(docs) == 0:
        raise InputError(f"{name}: no usable documents")
    return Collection(name, docs, queries, qrels.reset_index(drop=True), run, skipped,
                      collection.min_relevant, collection.run_name, collection.run_is_bm25)


def with_relevance_threshold(collection: Collection, threshold: int, where: str = "") -> Collection:
    """The collection with another binary relevance threshold, refused outside its grades."""
    from dataclasses import replace

    grades = sorted(int(g) for g in collection.qrels.relevance.unique() if g > 0)
    if not grades:
        raise InputError(f"{collection.name}: the qrels hold no grade above 0, so no threshold "
                         "can be set; check the qrels file")
    if int(threshold) != threshold or not grades[0] <= threshold <= grades[-1]:
        raise InputError(f"{where or collection.name}: relevance threshold {threshold} is "
                         f"outside the collection's positive grades "
                         f"({', '.join(map(str, grades))}); choose one of them")
    return replace(collection, min_relevant=int(threshold))


def with_qrels(collection: Collection, path: str | Path) -> Collection:
    """The collection judged by another TREC qrels file (e.g. the complete official qrels).

    Judgments of documents whose text is not in the collection are kept: nDCG's ideal ranking
    counts every relevant document, found or not, as trec_eval does. Refused (one sentence naming
    the file) when the file is missing or malformed, names none of the collection's queries, or
    shares no judged document with it (a qrels file for another collection).
    """
    from dataclasses import replace

    path = Path(path)
    qrels = read_trec_qrels(path, strict=True)
    if qrels.empty:
        raise InputError(f"{path}: no judgments in the file; give a TREC qrels file "
                         "(query_id 0 doc_id grade)")
    known_queries = set(collection.queries.qid)
    ours = qrels[qrels.qid.isin(known_queries)]
    if ours.empty:
        raise InputError(f"{path}: none of its {qrels.qid.nunique()} query ids is a query of "
                         f"{collection.name} (first: {qrels.qid.iloc[0]!r}); is it the qrels "
                         "file of another collection?")
    if not ours.docno.isin(set(collection.docs.docno)).any():
        raise InputError(f"{path}: none of its judged documents is in {collection.name}; is it "
                         "the qrels file of another collection?")
    negative = ours[ours.relevance < 0]
    ours = ours[ours.relevance >= 0].drop_duplicates(["qid", "docno"], keep="last")
    skipped = dict(collection.skipped)
    if len(negative):
        skipped["qrels with a negative grade"] = len(negative)
    return replace(collection, qrels=ours.reset_index(drop=True), skipped=skipped)


def demo_collection() -> Collection:
    """The generated demo collection (see :mod:`core.demo_collection`)."""
    from core.demo_collection import build_demo_collection

    docs, queries, qrels = build_demo_collection()
    # Grade 1 = "on topic but does not answer", as TREC DL's grade 1: binary measures count
    # grades >= 2, as TREC DL does.
    return Collection("demo", docs, queries, qrels, min_relevant=2)


def load_folder(path: str | Path, *, strict: bool = False) -> Collection:
    """Load a collection folder, recognising its layout by file names.

    Layouts: BEIR (``corpus.jsonl``, ``queries.jsonl``, ``qrels/*.tsv``); MS MARCO-style
    (``collection.tsv``/``docs.tsv``, ``queries.tsv``, ``qrels*``); the shared Cranfield layout
    (``docs.jsonl``, ``queries.tsv``, ``qrels.txt``). An optional ``run.txt`` (TREC run) is read.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: not a folder; give a collection folder or 'demo'")
    skipped: dict[str, int] = {}
    files = {p.name: p for p in path.iterdir()}
    if "corpus.jsonl" in files:  # BEIR
        docs = read_jsonl(files["corpus.jsonl"], DOC_JSON_FIELDS, strict=strict, skipped=skipped)
        queries = read_jsonl(files["queries.jsonl"], QUERY_JSON_FIELDS, strict=strict,
                             skipped=skipped)
        qrel_frames = []
        for qrel_file in sorted((path / "qrels").glob("*.tsv")):
            lines = read_text_lines(qrel_file)
            body = "\n".join(lines[1:] if lines and lines[0].startswith("query-id") else lines)
            frame = pd.read_csv(io.StringIO(body), sep="\t", header=None,
                                names=["qid", "docno", "relevance"], dtype=str)
            qrel_frames.append(frame)
        if not qrel_frames:
            raise InputError(f"{path}: BEIR folder has no qrels/*.tsv")
        qrels = pd.concat(qrel_frames, ignore_index=True)
        qrels["relevance"] = pd.to_numeric(qrels.relevance, errors="coerce")
        bad = qrels.relevance.isna()
        if bad.any():
            _skip_or_raise(strict, skipped, f"{path}/qrels", "relevance is not an integer")
            qrels = qrels[~bad]
        qrels = qrels.astype({"relevance": "int64"})
    else:
        doc_file = next((files[n] for n in ("docs.jsonl", "corpus.jsonl") if n in files), None)
        if doc_file is not None:
            docs = read_jsonl(doc_file, DOC_JSON_FIELDS, strict=strict, skipped=skipped)
        else:
            tsv = next((files[n] for n in ("collection.tsv", "docs.tsv") if n in files), None)
            if tsv is None:
                raise InputError(f"{path}: no documents found (expected docs.jsonl, "
                                 "corpus.jsonl, collection.tsv or docs.tsv)")
            frame = read_tsv(tsv, ["docno", "text"], strict=strict, skipped=skipped)
            docs = frame.assign(title="")[DOC_COLUMNS]
        if "queries.tsv" in files:
            queries = read_tsv(files["queries.tsv"], QUERY_COLUMNS, strict=strict, skipped=skipped)
        elif "queries.jsonl" in files:
            queries = read_jsonl(files["queries.jsonl"], QUERY_JSON_FIELDS, strict=strict,
                                 skipped=skipped)
        elif "topics.txt" in files:
            queries = read_trec_topics(files["topics.txt"])
        else:
            raise InputError(f"{path}: no queries found (expected queries.tsv, queries.jsonl "
                             "or topics.txt)")
        qrel_file = next((p for n, p in sorted(files.items()) if n.startswith("qrels")), None)
        if qrel_file is None:  # unjudged (TREC DL 2022 here): fine wherever no grade is read
            qrels = pd.DataFrame({"qid": pd.Series(dtype=str), "docno": pd.Series(dtype=str),
                                  "relevance": pd.Series(dtype="int64")})
        else:
            qrels = read_trec_qrels(qrel_file, strict=strict, skipped=skipped)
    run, run_is_bm25 = None, False
    if "run.txt" in files:
        run = read_trec_run(files["run.txt"], strict=strict, skipped=skipped)
        run_is_bm25 = _run_tag(files["run.txt"]).lower().startswith("bm25")
        missing = ~run.docno.isin(set(docs.docno))
        if missing.any() and len(docs):
            docno = run.docno[missing].iloc[0]
            line = next(number for number, text in enumerate(read_text_lines(files["run.txt"]), 1)
                        if len(text.split()) > 2 and text.split()[2] == docno)
            raise InputError(f"{files['run.txt']} line {line}: document {docno!r} "
                             f"is not in the collection's documents ({int(missing.sum())} run "
                             "lines name missing documents); add their texts to the documents "
                             "file or remove those lines from run.txt")
    threshold = _folder_threshold(path)
    collection = validate(Collection(path.name, docs, queries, qrels, run, skipped, threshold,
                                     "run.txt" if run is not None else "", run_is_bm25),
                          strict=strict)
    if (path / COLLECTION_SETTINGS).is_file():
        collection = with_relevance_threshold(collection, threshold,
                                              str(path / COLLECTION_SETTINGS))
    return collection


def _run_tag(path: Path) -> str:
    """The tag (6th field) of a TREC run's first line, '' when absent."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            parts = line.split()
            if parts:
                return parts[5] if len(parts) > 5 else ""
    return ""


def _folder_threshold(path: Path) -> int:
    """The binary relevance threshold a folder declares (``collection.json``), a named shared
    folder's, else 1."""
    settings = path / COLLECTION_SETTINGS
    if settings.is_file():
        try:
            value = json.loads(settings.read_text(encoding="utf-8")).get("relevance_threshold", 1)
        except (ValueError, AttributeError) as error:
            raise InputError(f"{settings}: not a JSON object ({error}); write e.g. "
                             '{"relevance_threshold": 2}') from None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{settings}: relevance_threshold must be a whole number >= 1, "
                             f"got {value!r}")
        return value
    for folder, threshold in NAMED_FOLDERS.values():
        if folder.is_dir() and path.resolve() == folder.resolve():
            return threshold
    return 1


def load_ir_datasets(dataset_id: str) -> Collection:
    """Load a collection through ``ir_datasets`` (needs the package and network access)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("RANKSCOPE_OFFLINE") == "1":
        raise InputError(f"ir_datasets id {dataset_id!r}: offline mode is on; download the "
                         "collection on a connected machine and load its folder instead")
    try:
        import ir_datasets
    except ImportError:
        raise InputError(f"ir_datasets id {dataset_id!r}: the ir_datasets package is not "
                         "installed; run `pip install ir_datasets` or load a folder") from None
    try:
        dataset = ir_datasets.load(dataset_id)
        docs = pd.DataFrame([(d.doc_id, getattr(d, "title", ""), d.default_text())
                             for d in dataset.docs_iter()], columns=DOC_COLUMNS)
        queries = pd.DataFrame([(q.query_id, q.default_text()) for q in dataset.queries_iter()],
                               columns=QUERY_COLUMNS)
        qrels = pd.DataFrame([(r.query_id, r.doc_id, r.relevance) for r in dataset.qrels_iter()],
                             columns=QREL_COLUMNS)
    except KeyError:
        raise InputError(f"ir_datasets id {dataset_id!r} is not known to ir_datasets") from None
    except OSError as error:
        raise InputError(f"ir_datasets id {dataset_id!r} could not be downloaded ({error}); "
                         "check the network or load a local folder") from None
    threshold = 2 if "trec-dl" in dataset_id else 1  # TREC DL: grade >= 2, the track's rule
    return validate(Collection(dataset_id, docs, queries, qrels, min_relevant=threshold),
                    strict=False)


def load_collection(source: str | Path, *, strict: bool = False) -> Collection:
    """``demo``, a named shared collection (``cranfield``, ``trec-dl-2019``, ``trec-dl-2020``),
    a folder path, or ``irds:<ir_datasets id>``."""
    source = str(source)
    if source == "demo":
        return demo_collection()
    if source in NAMED_FOLDERS:
        folder, _ = NAMED_FOLDERS[source]
        if not folder.is_dir():
            raise InputError(f"{source}: the shared collection is not at {folder}; see README "
                             "(Real collections) for how to get it")
        return load_folder(folder, strict=strict)
    if source.startswith("irds:"):
        return load_ir_datasets(source[5:])
    return load_folder(source, strict=strict)


def available_collections() -> list[str]:
    return ["demo"] + [name for name, (folder, _) in NAMED_FOLDERS.items() if folder.is_dir()]


# --------------------------------------------------------------------------- uploads
UPLOAD_FILES = ("docs.jsonl", "corpus.jsonl", "collection.tsv", "docs.tsv", "queries.tsv",
                "queries.jsonl", "run.txt")
UPLOAD_SUFFIXES = (".jsonl", ".tsv", ".txt")
BEIR_QRELS = ("train.tsv", "dev.tsv", "test.tsv")  # BEIR's qrels/ files
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def save_upload(files: list[tuple[str, bytes]], root: str | Path, limit_mb: float,
                name: str = "") -> Path:
    """Check uploaded collection files and keep them as a collection folder under ``root``.

    Files are plain text, read only by this module's parsers (nothing is unpickled, unzipped
    or executed). Accepted names: the folder layouts of :func:`load_folder` (``docs.jsonl`` /
    ``corpus.jsonl`` / ``collection.tsv`` / ``docs.tsv``, ``queries.tsv`` / ``queries.jsonl``,
    ``qrels*``, optional ``run.txt``); with ``corpus.jsonl`` (BEIR) the qrels go to ``qrels/``.
    The folder is written under a temporary name and loaded strictly; only a collection that
    loads is renamed into place, so a refused upload leaves nothing behind.

    Returns:
        the collection folder (named ``name``, or ``upload-<content hash>``).

    Raises:
        InputError: over the size limit, an unsafe or unexpected file name, a name given
            twice, or a file the strict loader refuses (its message names file and line).
    """
    import shutil
    import uuid

    if not files:
        raise InputError("upload: no files given; upload docs, queries and qrels files")
    total = sum(len(data) for _, data in files)
    if total > limit_mb * 1024 * 1024:
        raise InputError(f"upload: {total / 1024 / 1024:.1f} MB is over the {limit_mb:g} MB "
                         "upload limit; add a large collection as a folder instead "
                         "(sidebar: Add a collection folder)")
    names = [filename for filename, _ in files]
    for filename in names:
        if not _SAFE_NAME.match(filename) or ".." in filename:
            raise InputError(f"upload: file name {filename!r} is not a plain file name "
                             "(letters, digits, '.', '_' and '-' only)")
        if filename not in UPLOAD_FILES and not _is_qrels(filename, names):
            raise InputError(f"upload: unexpected file {filename!r}; expected "
                             f"{', '.join(UPLOAD_FILES)}, qrels*.txt / qrels*.tsv, or with "
                             f"BEIR's corpus.jsonl its {' / '.join(BEIR_QRELS)}")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"upload: {', '.join(twice)} given more than once")
    digest = hashlib.sha256()
    for filename, data in sorted(files):
        digest.update(filename.encode() + b"\0" + data)
    name = name.strip() or f"upload-{digest.hexdigest()[:8]}"
    if not _SAFE_NAME.match(name) or ".." in name:
        raise InputError(f"upload: collection name {name!r} must be letters, digits, '.', '_' "
                         "or '-' (at most 80)")
    root = Path(root)
    target = root / name
    if target.exists():
        marker = target / ".upload-digest"
        if marker.is_file() and marker.read_text() == digest.hexdigest():
            return target  # the same files again
        raise InputError(f"upload: a collection named {name!r} already exists; choose "
                         "another name")
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".partial-{uuid.uuid4().hex}"
    beir = "corpus.jsonl" in names
    try:
        partial.mkdir()
        for filename, data in files:
            where = partial / ("qrels" if beir and _is_qrels(filename, names) else "")
            where.mkdir(exist_ok=True)
            (where / filename).write_bytes(data)
        load_folder(partial, strict=True)  # refuses what the collection cannot be used with
        (partial / ".upload-digest").write_text(digest.hexdigest())
        partial.rename(target)
    except InputError as error:
        shutil.rmtree(partial, ignore_errors=True)
        message = str(error).replace(str(partial), f"upload {name}").replace(
            partial.name, f"upload {name}")
        raise InputError(message) from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def _is_qrels(filename: str, names: list[str]) -> bool:
    if "corpus.jsonl" in names:  # BEIR: qrels/*.tsv
        return filename in BEIR_QRELS or (filename.startswith("qrels")
                                           and filename.endswith(".tsv"))
    return filename.startswith("qrels") and filename.endswith(UPLOAD_SUFFIXES)
