//! The other candidate, fjall (an LSM tree with a journal), for the
//! benchmark only: a batch is one journal record, `SyncAll` after it when
//! the batch must be durable.

use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Engine, EngineError, Op, Table};

pub struct Fjall {
    db: Database,
    keyspaces: Vec<Keyspace>,
    path: PathBuf,
}

impl std::fmt::Debug for Fjall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fjall").field("path", &self.path).finish()
    }
}

fn classify(path: &Path, e: fjall::Error) -> EngineError {
    let file = path.to_path_buf();
    match e {
        fjall::Error::Io(io) => EngineError::from_io(path, &io),
        fjall::Error::Storage(lsm_tree_err) => EngineError::Failed { file, detail: lsm_tree_err.to_string() },
        fjall::Error::JournalRecovery(r) => EngineError::Corrupt { file, detail: format!("{r:?}") },
        other => EngineError::Failed { file, detail: format!("{other:?}") },
    }
}

impl Fjall {
    pub fn open(dir: &Path) -> Result<Fjall, EngineError> {
        let db = Database::builder(dir).open().map_err(|e| classify(dir, e))?;
        let mut keyspaces = Vec::new();
        for t in Table::ALL {
            keyspaces.push(db.keyspace(t.name(), KeyspaceCreateOptions::default).map_err(|e| classify(dir, e))?);
        }
        Ok(Fjall { db, keyspaces, path: dir.to_path_buf() })
    }
}

impl Engine for Fjall {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let v = self.keyspaces[t as usize].get(key).map_err(|e| classify(&self.path, e))?;
        Ok(v.map(|v| v.to_vec()))
    }

    fn scan(&self, t: Table, prefix: &[u8], f: &mut super::RowFn<'_>) -> Result<(), EngineError> {
        for g in self.keyspaces[t as usize].prefix(prefix) {
            let (k, v) = g.into_inner().map_err(|e| classify(&self.path, e))?;
            f(&k, &v)?;
        }
        Ok(())
    }

    fn write(&mut self, ops: &[Op], sync: bool) -> Result<(), EngineError> {
        let mut b = self.db.batch().durability(sync.then_some(PersistMode::SyncAll));
        for (t, k, v) in ops {
            let ks = &self.keyspaces[*t as usize];
            match v {
                Some(v) => b.insert(ks, k.as_slice(), v.as_slice()),
                None => b.remove(ks, k.as_slice()),
            }
        }
        b.commit().map_err(|e| classify(&self.path, e))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
