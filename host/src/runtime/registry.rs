//! The installed connectors of a host: every `*.wasm` of the connectors folder, loaded
//! (checked, compiled, described) at start.

use std::collections::BTreeMap;
use std::path::Path;

use super::{LoadError, LoadedConnector, Runtime};

/// Connectors by id.
#[derive(Clone, Default)]
pub struct Registry {
    connectors: BTreeMap<String, LoadedConnector>,
}

/// Why a connectors folder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The folder cannot be read.
    #[error("cannot read the connectors folder {path}: {source}")]
    Folder {
        /// The folder.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A component was refused.
    #[error("{file}: {source}")]
    Load {
        /// The file.
        file: String,
        /// Why.
        source: LoadError,
    },
    /// Two components declare the same id.
    #[error("{file}: connector id `{id}` is already installed from another file")]
    Duplicate {
        /// The second file.
        file: String,
        /// The id.
        id: String,
    },
}

impl Registry {
    /// Loads every `*.wasm` in `dir`, in name order. One bad component fails the whole
    /// install: an operator should not start a host that silently lacks a connector.
    pub async fn install_dir(runtime: &Runtime, dir: &Path) -> Result<Self, InstallError> {
        let folder_error = |source| InstallError::Folder { path: dir.display().to_string(), source };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(folder_error)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
            .collect();
        files.sort();
        let mut registry = Registry::default();
        for file in files {
            let name = file.display().to_string();
            let connector =
                runtime.load_file(&file).await.map_err(|source| InstallError::Load { file: name.clone(), source })?;
            registry.insert(connector).map_err(|id| InstallError::Duplicate { file: name, id })?;
        }
        Ok(registry)
    }

    /// Adds a loaded connector; gives back its id if one with that id is already there.
    pub fn insert(&mut self, connector: LoadedConnector) -> Result<(), String> {
        let id = connector.manifest().id.clone();
        if self.connectors.contains_key(&id) {
            return Err(id);
        }
        self.connectors.insert(id, connector);
        Ok(())
    }

    /// The connector with this id.
    pub fn get(&self, id: &str) -> Option<&LoadedConnector> {
        self.connectors.get(id)
    }

    /// All connectors, by id.
    pub fn iter(&self) -> impl Iterator<Item = &LoadedConnector> {
        self.connectors.values()
    }

    /// How many are installed.
    pub fn len(&self) -> usize {
        self.connectors.len()
    }

    /// Whether none is installed.
    pub fn is_empty(&self) -> bool {
        self.connectors.is_empty()
    }
}
