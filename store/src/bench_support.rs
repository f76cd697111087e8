//! For the engine benchmark only (`benches/engines.rs`): one engine,
//! written to directly, one group of change sets per atomic write and
//! fsync, so that the group size is exact.

use std::path::Path;

use portcullis_core::durable::{Change, Recovered, StoreError};

use crate::apply::Txn;
use crate::engine::{self, Engine};
use crate::error::{store_error, OpenError};
use crate::store::EngineKind;

pub struct EngineBench {
    engine: Box<dyn Engine>,
    next_order: u64,
}

impl std::fmt::Debug for EngineBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBench").field("path", &self.engine.path()).finish()
    }
}

impl EngineBench {
    pub fn open(kind: EngineKind, dir: &Path) -> Result<EngineBench, OpenError> {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Dir { path: dir.to_path_buf(), source })?;
        let mut engine: Box<dyn Engine> = match kind {
            EngineKind::Redb => Box::new(engine::redb::Redb::open(&dir.join(crate::store::FILE_NAME), false)?),
            #[cfg(feature = "bench-fjall")]
            EngineKind::Fjall => Box::new(engine::fjall::Fjall::open(&dir.join("fjall"))?),
        };
        crate::format::check_and_migrate(&mut *engine, &crate::format::FORMAT)?;
        Ok(EngineBench { engine, next_order: 0 })
    }

    /// Every set in one atomic write with one fsync.
    pub fn commit(&mut self, sets: &[Vec<Change>]) -> Result<(), StoreError> {
        let mut txn = Txn::new(&*self.engine, None, self.next_order);
        for c in sets.iter().flatten() {
            txn.apply(c).map_err(store_error)?;
        }
        let (ops, next) = txn.finish().map_err(store_error)?;
        self.engine.write(&ops, true).map_err(store_error)?;
        self.next_order = next;
        Ok(())
    }

    pub fn recover(&self) -> Result<Recovered, StoreError> {
        crate::recover::recover(&*self.engine).map(|r| r.recovered).map_err(store_error)
    }
}
