//! A layer tree kept in memory: checks a whole layer stack against the layer rules at import
//! time without writing a file.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{Kind, LayerError, Meta, Tree};

/// Entry kinds by relative path.
#[derive(Debug, Default)]
pub struct MemoryTree {
    entries: BTreeMap<PathBuf, Kind>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn descendants(&self, path: &Path) -> Vec<PathBuf> {
        // Paths order component by component, so a directory's descendants follow it directly.
        self.entries
            .range(path.to_path_buf()..)
            .map(|(p, _)| p)
            .skip_while(|p| p.as_path() == path)
            .take_while(|p| p.starts_with(path))
            .cloned()
            .collect()
    }
}

impl Tree for MemoryTree {
    fn kind(&self, path: &Path) -> Result<Option<Kind>, LayerError> {
        Ok(self.entries.get(path).copied())
    }

    fn remove(&mut self, path: &Path) -> Result<(), LayerError> {
        self.clear_dir(path)?;
        self.entries.remove(path);
        Ok(())
    }

    fn clear_dir(&mut self, path: &Path) -> Result<(), LayerError> {
        for child in self.descendants(path) {
            self.entries.remove(&child);
        }
        Ok(())
    }

    fn make_dir(&mut self, path: &Path, _meta: &Meta) -> Result<(), LayerError> {
        self.entries.insert(path.to_path_buf(), Kind::Dir);
        Ok(())
    }

    fn write_file(
        &mut self,
        path: &Path,
        _meta: &Meta,
        data: &mut dyn Read,
    ) -> Result<(), LayerError> {
        io::copy(data, &mut io::sink()).map_err(LayerError::Read)?;
        self.entries.insert(path.to_path_buf(), Kind::File);
        Ok(())
    }

    fn symlink(&mut self, path: &Path, _target: &Path, _meta: &Meta) -> Result<(), LayerError> {
        self.entries.insert(path.to_path_buf(), Kind::Symlink);
        Ok(())
    }

    fn hard_link(&mut self, path: &Path, target: &Path) -> Result<(), LayerError> {
        let kind = self.entries.get(target).copied().unwrap_or(Kind::File);
        self.entries.insert(path.to_path_buf(), kind);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_memory_tree_remove_dir_drops_descendants_only() {
        let mut tree = MemoryTree::new();
        for (p, k) in [("a", Kind::Dir), ("a/b", Kind::File), ("a0", Kind::File)] {
            tree.entries.insert(PathBuf::from(p), k);
        }

        tree.remove(Path::new("a")).unwrap();

        assert_eq!(tree.len(), 1);
        assert_eq!(tree.kind(Path::new("a0")).unwrap(), Some(Kind::File));
    }
}
