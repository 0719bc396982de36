//! Every schema the project has shipped, opened by this release: each must end up the same shape
//! as a fresh store and keep its rows. `schemas/vN-<commit>.sql` is the schema text of version N
//! as the named commit created it (two releases changed a version's tables without a bump; both
//! variants are here).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::Path;
use ztai_store::prelude::*;
use ztai_store::{SCHEMA_VERSION, Sqlite};

/// Tables with their columns (name, type, not-null, default, primary-key position) and the
/// names of the explicit indexes: what a query can notice of a schema.
type Shape = (BTreeMap<String, Vec<String>>, Vec<String>);

fn shape(path: &Path) -> Shape {
    let c = Connection::open(path).unwrap();
    let mut tables = BTreeMap::new();
    let names: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for t in names {
        let cols: Vec<String> = c
            .prepare(&format!("PRAGMA table_info('{t}')"))
            .unwrap()
            .query_map([], |r| {
                Ok(format!(
                    "{} {} notnull={} default={:?} pk={}",
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        tables.insert(t, cols);
    }
    let indexes = c
        .prepare("SELECT name || ' ON ' || tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (tables, indexes)
}

fn shipped() -> Vec<(i64, String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemas");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
            let version: i64 = stem[1..stem.find('-').unwrap()].parse().unwrap();
            (version, stem, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_shipped_schema_opens_as_the_current_one_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.db");
    Sqlite::open(&fresh).unwrap();
    let want = shape(&fresh);

    let schemas = shipped();
    let versions: std::collections::BTreeSet<i64> = schemas.iter().map(|s| s.0).collect();
    assert_eq!(
        versions,
        (1..=SCHEMA_VERSION).collect(),
        "every released version has a fixture; add one for a new step"
    );
    for (version, name, sql) in schemas {
        let path = dir.path().join(format!("{name}.db"));
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(&sql).unwrap();
            c.pragma_update(None, "user_version", version).unwrap();
            c.execute(
                "INSERT INTO api_keys (key_id, secret_hash, principal_kind, principal_id, groups_json, label, created_at)
                 VALUES ('k1', x'00', 'user', 'alice', '[]', 'old', '2026-11-21T00:00:00Z')",
                [],
            )
            .unwrap();
            c.execute(
                "INSERT INTO audit_log (seq, record_id, time, principal, action, decision, record_json, prev_hash, hash)
                 VALUES (1, 'r1', '2026-11-21T00:00:00Z', 'alice', 'chat', 'allow', '{}', x'00', x'01')",
                [],
            )
            .unwrap();
        }
        let store = Sqlite::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            store.list_keys().unwrap().len(),
            1,
            "{name}: the key is kept"
        );
        assert_eq!(
            store.audit_count().unwrap(),
            1,
            "{name}: the record is kept"
        );
        drop(store);
        let got = shape(&path);
        assert_eq!(got.0, want.0, "{name}: tables differ from a fresh store's");
        assert_eq!(got.1, want.1, "{name}: indexes differ from a fresh store's");
        let c = Connection::open(&path).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION, "{name}");
    }
}

#[test]
fn reopening_a_current_store_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ztai.db");
    Sqlite::open(&path).unwrap();
    let before = shape(&path);
    Sqlite::open(&path).unwrap();
    assert_eq!(shape(&path), before);
}
