//! The store on redb: one file (`store.redb`), a copy-on-write B-tree
//! whose commit with `Durability::Immediate` is durable when it returns.
//!
//! redb remembers an I/O error and refuses every later transaction
//! (`PreviousIo`); after a failed write the engine closes the file and
//! reopens it at its next use — a read or a write — which brings back the
//! last committed state, so that a disk that was full and has room again
//! takes commits again without a restart. (The store's writer reads rows
//! before it writes a group, so the reopen cannot wait for a write.)

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Engine, EngineError, Op, Table};

fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

/// A read transaction kept between writes, with the tables opened so far:
/// the writer reads a row or two per change while it gathers a group, and
/// a transaction (and a table) per read cost more than the read.
struct Reader {
    tx: ReadTransaction,
    tables: Vec<Option<ReadOnlyTable<&'static [u8], &'static [u8]>>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

#[derive(Debug)]
pub struct Redb {
    /// `None` after a failed write: reopened at the next use. A `RefCell`:
    /// reads (`&self`) may reopen too, and the engine is used by one
    /// thread (the store's writer) at a time.
    db: RefCell<Option<Database>>,
    /// The committed state as of the last write (dropped by every write,
    /// which must not keep the pages it replaces pinned, and on close).
    reader: RefCell<Option<Reader>>,
    path: PathBuf,
    /// After a failure: the error, and when to try to reopen again. Until
    /// then every use fails at once with that error: reopening a file
    /// that was not closed cleanly makes redb repair it (read all of it),
    /// which must not happen once per refused commit while a disk stays
    /// full.
    failed: RefCell<Option<(EngineError, Instant)>>,
}

/// How long after a failure the file is not reopened: a disk that has
/// room again takes commits again within this time.
const RETRY_AFTER: Duration = Duration::from_millis(500);

impl Redb {
    /// Opens (or creates) the store file. With `check_on_open`, redb reads
    /// the whole file and verifies its checksums first: a damaged file is
    /// refused with an error instead of read (redb may panic on a page it
    /// cannot make sense of).
    pub fn open(path: &Path, check_on_open: bool) -> Result<Redb, EngineError> {
        let db = open_db(path, check_on_open)?;
        let mut me = Redb {
            db: RefCell::new(Some(db)),
            reader: RefCell::new(None),
            path: path.to_path_buf(),
            failed: RefCell::new(None),
        };
        // Every table exists from the start, so that reads never meet a
        // missing one.
        me.write(&[], true)?;
        Ok(me)
    }

    /// Runs `f` on the open database, reopening it first after a failed
    /// write (the reopen's own error — still full, damaged — is returned).
    fn with_db<R>(&self, f: impl FnOnce(&Database) -> Result<R, redb::Error>) -> Result<R, EngineError> {
        if self.db.borrow().is_none() {
            if let Some((e, retry_at)) = &*self.failed.borrow() {
                if Instant::now() < *retry_at {
                    return Err(e.clone());
                }
            }
            // No page verification here: the file was verified when the
            // broker started, and since then only this engine wrote it
            // (a full verification on every attempt while the disk is
            // full would make each refused commit cost a read of the
            // whole file).
            let db = open_db(&self.path, false).inspect_err(|e| self.failing(e))?;
            *self.db.borrow_mut() = Some(db);
        }
        let guard = self.db.borrow();
        let db =
            guard.as_ref().ok_or_else(|| EngineError::Failed { file: self.path.clone(), detail: "not open".into() })?;
        f(db).map_err(|e| self.classify(e))
    }

    fn failing(&self, e: &EngineError) {
        *self.failed.borrow_mut() = Some((e.clone(), Instant::now() + RETRY_AFTER));
    }

    /// Closes the database after a failed write (redb refuses every later
    /// transaction); a use after [`RETRY_AFTER`] reopens it.
    fn close(&self) {
        self.reader.borrow_mut().take();
        let db = self.db.borrow_mut().take();
        // Dropping may try to write on a disk that is still full; a
        // panic there must not take the writer down.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(db)));
    }

    fn classify(&self, e: redb::Error) -> EngineError {
        classify(&self.path, e)
    }

    fn write_inner(db: &Database, ops: &[Op], sync: bool) -> Result<(), redb::Error> {
        let mut tx = db.begin_write()?;
        tx.set_durability(if sync { Durability::Immediate } else { Durability::None })?;
        {
            let mut tables = Vec::with_capacity(Table::ALL.len());
            for t in Table::ALL {
                tables.push(tx.open_table(def(t))?);
            }
            for (t, k, v) in ops {
                let table = &mut tables[*t as usize];
                match v {
                    Some(v) => {
                        table.insert(k.as_slice(), v.as_slice())?;
                    }
                    None => {
                        table.remove(k.as_slice())?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn open_db(path: &Path, check: bool) -> Result<Database, EngineError> {
    let mut b = Database::builder();
    b.set_check_integrity_on_open(check);
    match catch_unwind(AssertUnwindSafe(|| b.create(path))) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(classify(path, e.into())),
        Err(_) => Err(EngineError::Corrupt { file: path.to_path_buf(), detail: "the engine failed reading it".into() }),
    }
}

fn classify(path: &Path, e: redb::Error) -> EngineError {
    let file = path.to_path_buf();
    match e {
        redb::Error::Io(io) => EngineError::from_io(path, &io),
        redb::Error::Corrupted(detail) => EngineError::Corrupt { file, detail },
        redb::Error::DatabaseAlreadyOpen => EngineError::Locked { file },
        redb::Error::UpgradeRequired(v) => EngineError::Corrupt {
            file,
            detail: format!("written in redb file format {v}, which this build cannot read"),
        },
        other => EngineError::Failed { file, detail: other.to_string() },
    }
}

impl Engine for Redb {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let f = || {
            self.with_db(|db| {
                let mut reader = self.reader.borrow_mut();
                if reader.is_none() {
                    *reader = Some(Reader { tx: db.begin_read()?, tables: Table::ALL.iter().map(|_| None).collect() });
                }
                let Some(r) = reader.as_mut() else { unreachable!("set above") };
                let slot = &mut r.tables[t as usize];
                if slot.is_none() {
                    *slot = Some(r.tx.open_table(def(t))?);
                }
                let Some(table) = slot.as_ref() else { unreachable!("set above") };
                let v = table.get(key)?.map(|v| v.value().to_vec());
                Ok(v)
            })
        };
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => r,
            Err(_) => {
                Err(EngineError::Corrupt { file: self.path.clone(), detail: "the engine failed reading it".into() })
            }
        }
    }

    fn scan(&self, t: Table, prefix: &[u8], f: &mut super::RowFn<'_>) -> Result<(), EngineError> {
        let mut run = || -> Result<Result<(), EngineError>, EngineError> {
            self.with_db(|db| {
                let rx = db.begin_read()?;
                let table = rx.open_table(def(t))?;
                for row in table.range(prefix..)? {
                    let (k, v) = row?;
                    let k = k.value();
                    if !k.starts_with(prefix) {
                        break;
                    }
                    if let Err(e) = f(k, v.value()) {
                        return Ok(Err(e));
                    }
                }
                Ok(Ok(()))
            })
        };
        match catch_unwind(AssertUnwindSafe(&mut run)) {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(e),
            Err(_) => {
                Err(EngineError::Corrupt { file: self.path.clone(), detail: "the engine failed reading it".into() })
            }
        }
    }

    fn write(&mut self, ops: &[Op], sync: bool) -> Result<(), EngineError> {
        self.reader.get_mut().take();
        let r = match catch_unwind(AssertUnwindSafe(|| self.with_db(|db| Redb::write_inner(db, ops, sync)))) {
            Ok(r) => r,
            Err(_) => Err(EngineError::Corrupt { file: self.path.clone(), detail: "the engine failed writing".into() }),
        };
        match &r {
            Ok(()) => {
                self.failed.borrow_mut().take();
            }
            Err(e) => {
                // redb refuses every transaction after an I/O error; reopen
                // at a use after RETRY_AFTER.
                if self.db.borrow().is_some() {
                    self.failing(e);
                }
                self.close();
            }
        }
        r
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
