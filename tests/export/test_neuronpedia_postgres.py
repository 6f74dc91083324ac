"""The Neuronpedia export replayed into PostgreSQL built from Neuronpedia's own migrations.

Slow, and only where it can run: PostgreSQL's server binaries (Debian's postgresql
package) and a copy of Neuronpedia's repository (``$NEURONPEDIA_REPO``: a checkout or a
git directory; its ``apps/webapp/prisma/migrations`` are read at test time, never copied
here). Neuronpedia's ``Explanation.embedding`` is a pgvector ``vector(256)``: where the
pgvector extension is installed for that server (``vector.control`` in its extension
folder) the schema is built exactly as the migrations say; elsewhere the extension is
left out and ``vector(256)`` is created as ``real[]`` (Debian 12's archive has no
``postgresql-15-pgvector`` package, it ships from Debian 13 and apt.postgresql.org, and
no other source is reachable from the machines these tests run on). Everything else is
Neuronpedia's schema as its migrations build it.

The replay does what ``apps/webapp/app/api/admin/import/route.ts`` and ``lib/db/import.ts``
do: config upserted by name; release, model, source set and source created unless they
exist; then every ``features``, ``activations`` and ``explanations`` file inserted with
``jsonb_to_recordset`` over the columns its first line names, ``ON CONFLICT DO NOTHING``;
scores the same way, as the README tells users to load them.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest
from synthetic_store import fill_store

import featurelens
from featurelens.export.neuronpedia.rows import DEFAULT_CREATOR_ID
from featurelens.export.runner import export

BIN = Path("/usr/lib/postgresql")
MIGRATIONS = "apps/webapp/prisma/migrations"
TAG = "$fl$"


def _server_bin() -> Path | None:
    found = sorted(BIN.glob("*/bin/postgres"))
    return found[-1].parent if found else None


def _migrations_sql() -> str | None:
    repo = os.environ.get("NEURONPEDIA_REPO", "/work/.mirror/hijohnnylin+neuronpedia/repo")
    root = Path(repo)
    if (root / MIGRATIONS).is_dir():
        files = sorted((root / MIGRATIONS).glob("*/migration.sql"))
        return "\n".join(f.read_text() for f in files)
    if not root.is_dir():
        return None
    listing = subprocess.run(["git", f"--git-dir={root}", "ls-tree", "-r", "--name-only", "HEAD", MIGRATIONS],
                             capture_output=True, text=True)
    names = sorted(n for n in listing.stdout.split() if n.endswith("migration.sql"))
    if listing.returncode or not names:
        return None
    return "\n".join(subprocess.run(["git", f"--git-dir={root}", "show", f"HEAD:{n}"], capture_output=True,
                                    text=True, check=True).stdout for n in names)


def _has_pgvector(bin_dir: Path) -> bool:
    """Whether pgvector is installed for the server in ``bin_dir`` (Debian's layout)."""
    return (Path("/usr/share/postgresql") / bin_dir.parent.name / "extension" / "vector.control").is_file()


def _without_pgvector(sql: str) -> str:
    sql = sql.replace('CREATE EXTENSION IF NOT EXISTS "vector";', "").replace("vector(256)", "real[]")
    return ";".join(s for s in sql.split(";") if not re.search(r"vector_(cosine|l2|ip)_ops|USING (hnsw|ivfflat)", s))


class Postgres:
    """A throwaway server on a Unix socket, run as the ``postgres`` user (it refuses root)."""

    def __init__(self, bin_dir: Path, folder: Path) -> None:
        self.bin, self.folder, self.port = bin_dir, folder, "54329"
        self.user = "postgres" if os.geteuid() == 0 else None
        folder.mkdir(parents=True)
        if self.user:
            shutil.chown(folder, self.user)
        self._as_owner([str(bin_dir / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "np"])
        self._as_owner([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-o",
                        f"-k {folder} -p {self.port} -h ''", "-l", str(folder / "log"), "-w", "start"])

    def _as_owner(self, command: list[str]) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        subprocess.run(prefix + command, check=True, capture_output=True, timeout=120)

    def psql(self, sql: str, database: str = "np") -> str:
        out = subprocess.run(["psql", "-h", str(self.folder), "-p", self.port, "-U", "np", "-d", database,
                              "-v", "ON_ERROR_STOP=1", "-q", "-At", "-f", "-"], input=sql, capture_output=True,
                             text=True, timeout=600)
        if out.returncode:
            raise AssertionError(out.stderr[-2000:])
        return out.stdout

    def stop(self) -> None:
        self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop"])


@pytest.fixture(scope="module")
def neuronpedia_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    bin_dir = _server_bin()
    if bin_dir is None or shutil.which("psql") is None:
        pytest.skip("PostgreSQL's server is not installed (apt-get install postgresql)")
    sql = _migrations_sql()
    if sql is None:
        pytest.skip("Neuronpedia's migrations are not here; set NEURONPEDIA_REPO to a checkout of hijohnnylin/neuronpedia")
    import tempfile

    # Outside pytest's folders, which only root may enter: the server runs as postgres.
    place = Path(tempfile.mkdtemp(prefix="featurelens-pg-"))
    os.chmod(place, 0o755)
    server = Postgres(bin_dir, place / "server")
    try:
        server.psql("CREATE DATABASE np", database="postgres")
        server.psql(sql if _has_pgvector(bin_dir) else _without_pgvector(sql))
        server.psql(f"""INSERT INTO "User" (id, name, "emailUnsubscribeCode") VALUES ('{DEFAULT_CREATOR_ID}', 'bot', 'x')""")
        yield server
    finally:
        server.stop()
        shutil.rmtree(place, ignore_errors=True)


def _lines(path: Path) -> list[str]:
    data = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    return [line for line in data.replace("\\u0000", " ").split("\n") if line.strip()]


def _insert(db: Postgres, table: str, lines: list[str], conflict: str = "ON CONFLICT DO NOTHING") -> None:
    """lib/db/import.ts's insert: columns from the first line, types from the catalogue (an
    enum's name quoted: the importer meets none, Prisma creates the rows that have them)."""
    keys = list(json.loads(lines[0]))
    rows = db.psql(f"""SELECT column_name, CASE WHEN data_type = 'ARRAY' THEN udt_name::regtype::text || '[]'
                       WHEN data_type = 'USER-DEFINED' THEN quote_ident(udt_name) ELSE data_type END
                       FROM information_schema.columns WHERE table_name = '{table}'
                       AND column_name = ANY(ARRAY{keys!r}::text[]) ORDER BY ordinal_position""")
    columns = [line.split("|") for line in rows.splitlines()]
    assert len(columns) == len(keys), f"{table}: keys {sorted(set(keys) - {c for c, _ in columns})} are not columns"
    names = ", ".join(f'"{c}"' for c, _ in columns)
    defs = ", ".join(f'"{c}" {t}' for c, t in columns)
    payload = "[" + ",".join(lines) + "]"
    assert TAG not in payload
    db.psql(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM jsonb_to_recordset({TAG}{payload}{TAG}::jsonb) '
            f"AS t({defs}) {conflict};")


def _import(db: Postgres, bucket: Path, model_id: str, source_id: str) -> None:
    config = bucket / "v1" / "config"
    for name, table in (("explanation_model_type", "ExplanationModelType"), ("explanation_type", "ExplanationType"),
                        ("explanation_score_model", "ExplanationScoreModel"),
                        ("explanation_score_type", "ExplanationScoreType"), ("eval_type", "EvalType")):
        lines = _lines(config / f"{name}.jsonl")  # a missing file stops the importer: KeyError-like here
        if lines:
            keys = [k for k in json.loads(lines[0]) if k != "name"]
            _insert(db, table, lines, 'ON CONFLICT ("name") DO UPDATE SET '
                    + ", ".join(f'"{k}" = excluded."{k}"' for k in keys))
    folder = bucket / "v1" / model_id / source_id
    for name, table in (("release", "SourceRelease"), ("model", "Model"), ("sourceset", "SourceSet"),
                        ("source", "Source")):
        _insert(db, table, _lines(folder / f"{name}.jsonl"))  # created unless it exists
    for kind, table in (("features", "Neuron"), ("activations", "Activation"), ("explanations", "Explanation"),
                        ("explanation_scores", "ExplanationScore")):
        for path in sorted((folder / kind).glob("*.jsonl.gz")):
            _insert(db, table, _lines(path))


def _count(db: Postgres, table: str, where: str = "") -> int:
    return int(db.psql(f'SELECT count(*) FROM "{table}" {where}').strip())


@pytest.mark.slow
def test_export_imports_into_neuronpedias_schema(neuronpedia_db: Postgres, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.export.test_neuronpedia_fields import _Server, _vector

    embedder = _Server(lambda path, headers, body: (200, {  # OpenAI's embeddings API, on loopback
        "object": "list", "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1},
        "data": [{"object": "embedding", "index": i, "embedding": _vector(t)} for i, t in enumerate(body["input"])]}))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", embedder.url + "/v1")
    store = tmp_path / "s.duckdb"
    with featurelens.open_store(store) as s:
        fill_store(s, n_features=25)
        with s.transaction():  # an offline label and score: named for what wrote them
            s.insert("explanations", pa.table({
                "explanation_id": ["tl-0"], "dictionary_id": ["smollm2-l6-topk"], "feature": pa.array([0], pa.int32()),
                "explainer": ["token-lookup"], "llm": ["offline:none"], "text": ["the word cat"], "options": ["{}"]}))
    try:
        export(store, "neuronpedia", tmp_path / "bucket", embeddings="openai")
    finally:
        embedder.close()
    bucket, model_id, source_id = tmp_path / "bucket", "smollm2-135m", "6-smollm2-l6-topk"
    folder = bucket / "v1" / model_id / source_id
    expected = {table: sum(len(_lines(p)) for p in sorted((folder / kind).glob("*.jsonl.gz")))
                for kind, table in (("features", "Neuron"), ("activations", "Activation"),
                                    ("explanations", "Explanation"), ("explanation_scores", "ExplanationScore"))}
    _import(neuronpedia_db, bucket, model_id, source_id)
    where = f"""WHERE "modelId" = '{model_id}' AND layer = '{source_id}'"""
    assert _count(neuronpedia_db, "Neuron", where) == expected["Neuron"] == 25
    assert _count(neuronpedia_db, "Activation", where) == expected["Activation"]
    assert _count(neuronpedia_db, "Explanation", where) == expected["Explanation"]
    assert _count(neuronpedia_db, "ExplanationScore") == expected["ExplanationScore"] > 0
    # Every explanation's embedding lands in Explanation.embedding, 256 numbers (vector(256)
    # with pgvector, real[] without it), where Neuronpedia's explanation search reads it.
    dims = "vector_dims(embedding)" if _has_pgvector(neuronpedia_db.bin) else "array_length(embedding, 1)"
    assert neuronpedia_db.psql(f"""SELECT DISTINCT {dims} FROM "Explanation" {where}""").split() == ["256"]
    assert _count(neuronpedia_db, "Explanation", where + " AND embedding IS NULL") == 0
    # Visible: Neuronpedia lists public rows (or the user's own).
    assert neuronpedia_db.psql(f"""SELECT visibility FROM "Model" WHERE id = '{model_id}'""").strip() == "PUBLIC"
    assert neuronpedia_db.psql(f"""SELECT visibility FROM "Source" WHERE id = '{source_id}'""").strip() == "PUBLIC"
    # Every quantile interval is there, with SAEDashboard's meaning.
    bins = neuronpedia_db.psql(f"""SELECT count(DISTINCT round("binMin"::numeric, 3)) FROM "Activation" {where}
                                   AND "binContains" >= 0 AND index = '2'""")
    assert int(bins) >= 2
    # Importing the same export again adds nothing; replace.sql then a re-import restores it.
    _import(neuronpedia_db, bucket, model_id, source_id)
    assert _count(neuronpedia_db, "Activation", where) == expected["Activation"]
    neuronpedia_db.psql((folder / "replace.sql").read_text())
    assert _count(neuronpedia_db, "Neuron", where) == 0 and _count(neuronpedia_db, "Explanation", where) == 0
    _import(neuronpedia_db, bucket, model_id, source_id)
    assert _count(neuronpedia_db, "Neuron", where) == 25
    names = neuronpedia_db.psql(f"""SELECT DISTINCT "explanationModelName" FROM "Explanation" {where}""").split()
    assert "featurelens-token-lookup" in names and "none" not in names
