//! The store contract suite against the embedded SQLite adapter.

use etp::embedded::SqliteStore;

async fn sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("etp.sqlite3")).expect("open store");
    (store, dir)
}

etp::store_contract_tests!(sqlite());
