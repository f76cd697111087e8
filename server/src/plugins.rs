//! Compiled-in plugins: modules from other crates, always on.
//!
//! To add one, depend on its crate in `server/Cargo.toml` and add one line
//! to [`compiled_in`] (README, "Writing a module"). They run after the
//! built-in modules, in this order.

use std::sync::Arc;

use portcullis_core::hooks::Module;

/// The compiled-in plugins.
pub fn compiled_in() -> Vec<Arc<dyn Module>> {
    vec![
        // Arc::new(my_plugin::MyModule::default()),
    ]
}
