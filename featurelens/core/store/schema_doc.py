"""Generate docs/schema.md from the migrations, so the document cannot drift from them.

``python -m featurelens.core.store.schema_doc > docs/schema.md``; a test checks the file.
"""

from __future__ import annotations

import duckdb

from featurelens.core.store.database import migrations


def render() -> str:
    """The schema as Markdown: every table and column with its type and comment."""
    con = duckdb.connect(":memory:")
    names = []
    for name, sql in migrations():
        con.execute(sql)
        names.append(name)
    lines = [
        "# Feature store schema",
        "",
        "Generated from `featurelens/core/store/migrations/` by `make schema-doc`; do not edit by hand.",
        "",
        "Migrations: " + ", ".join(f"`{n}`" for n in names) + ".",
        "",
    ]
    tables = con.execute(
        "SELECT table_name, comment FROM duckdb_tables() ORDER BY table_name"
    ).fetchall()
    for table, comment in tables:
        lines += [f"## {table}", ""]
        if comment:
            lines += [comment, ""]
        lines += ["| column | type | null | description |", "| --- | --- | --- | --- |"]
        columns = con.execute(
            "SELECT column_name, data_type, is_nullable, comment FROM duckdb_columns() "
            "WHERE table_name = ? ORDER BY column_index",
            [table],
        ).fetchall()
        for column, dtype, nullable, col_comment in columns:
            lines.append(
                f"| {column} | {dtype} | {'yes' if nullable else 'no'} | {col_comment or ''} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
