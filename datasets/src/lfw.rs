//! Labeled Faces in the Wild over `images/NAME/NAME_NNNN.jpg`: the View-2
//! pairs protocol ([`Lfw`]: `pairs.txt`, 10 folds × 300 genuine + 300
//! impostor pairs) and an open-set 1:N protocol ([`Lfw1N`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

/// One protocol pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Index of the first image in [`Lfw::images`].
    pub a: usize,
    /// Index of the second image.
    pub b: usize,
    /// Same person?
    pub genuine: bool,
    /// Fold (0-based).
    pub fold: usize,
}

/// The pairs and the distinct images they use.
#[derive(Debug, Clone)]
pub struct Lfw {
    /// Image paths, each once.
    pub images: Vec<PathBuf>,
    /// Pairs in file order.
    pub pairs: Vec<Pair>,
    /// Number of folds.
    pub folds: usize,
    /// Pairs the protocol defines (before leaving any out).
    pub protocol_pairs: usize,
    /// Images listed in `pairs.txt` but absent; their pairs are left out of `pairs`.
    pub missing: Vec<PathBuf>,
}

impl Lfw {
    /// Reads `root/pairs.txt`. Pairs whose image file is missing are left
    /// out and the file is listed in `missing` (callers report it).
    pub fn load(root: &Path) -> Result<Lfw> {
        let pairs_path = root.join("pairs.txt");
        let text = std::fs::read_to_string(&pairs_path)
            .with_context(|| format!("reading {}", pairs_path.display()))?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<usize> = lines
            .next()
            .context("pairs.txt is empty")?
            .split_whitespace()
            .map(|v| v.parse())
            .collect::<Result<_, _>>()
            .context("pairs.txt header is not `FOLDS PAIRS_PER_CLASS`")?;
        let [folds, per_class] = header[..] else {
            bail!("pairs.txt header has {} numbers, expected 2", header.len());
        };
        let mut images: Vec<PathBuf> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let mut id = |name: &str, n: &str| -> Result<usize> {
            let n: u32 = n.parse().with_context(|| format!("image number `{n}`"))?;
            let path = root
                .join("images")
                .join(name)
                .join(format!("{name}_{n:04}.jpg"));
            Ok(*index.entry(path.clone()).or_insert_with(|| {
                images.push(path);
                images.len() - 1
            }))
        };
        let mut pairs = Vec::with_capacity(folds * per_class * 2);
        for (i, line) in lines.enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let fold = i / (2 * per_class);
            let pair = match fields[..] {
                [name, n1, n2] => Pair {
                    a: id(name, n1)?,
                    b: id(name, n2)?,
                    genuine: true,
                    fold,
                },
                [name1, n1, name2, n2] => Pair {
                    a: id(name1, n1)?,
                    b: id(name2, n2)?,
                    genuine: false,
                    fold,
                },
                _ => bail!("pairs.txt line {}: `{line}` is not a pair", i + 2),
            };
            pairs.push(pair);
        }
        ensure!(
            pairs.len() == folds * per_class * 2,
            "pairs.txt has {} pairs, its header promises {}",
            pairs.len(),
            folds * per_class * 2
        );
        let present: Vec<bool> = images.iter().map(|p| p.is_file()).collect();
        let missing: Vec<PathBuf> = images
            .iter()
            .zip(&present)
            .filter(|(_, ok)| !**ok)
            .map(|(p, _)| p.clone())
            .collect();
        ensure!(
            missing.len() < images.len() / 10,
            "{} of {} LFW images are missing under {}",
            missing.len(),
            images.len(),
            root.display()
        );
        pairs.retain(|p| present[p.a] && present[p.b]);
        // Renumber the images that remain.
        let mut new_index = vec![usize::MAX; images.len()];
        let mut kept = Vec::with_capacity(images.len());
        for (i, path) in images.into_iter().enumerate() {
            if present[i] {
                new_index[i] = kept.len();
                kept.push(path);
            }
        }
        for p in &mut pairs {
            p.a = new_index[p.a];
            p.b = new_index[p.b];
        }
        Ok(Lfw {
            images: kept,
            pairs,
            folds,
            protocol_pairs: folds * per_class * 2,
            missing,
        })
    }
}

/// The 1:N protocol: every identity with at least two images enrols its
/// first (by file name) and searches with the others (mated searches);
/// identities with one image are enrolled as distractors. Each probe also
/// makes a non-mated search: against the gallery without its mate.
#[derive(Debug, Clone)]
pub struct Lfw1N {
    /// Every image, sorted by path.
    pub images: Vec<PathBuf>,
    /// Identity name of each image.
    pub identity: Vec<String>,
    /// Enrolled images (indices into `images`), one per identity.
    pub gallery: Vec<usize>,
    /// Probes: (image, position of its mate in `gallery`).
    pub probes: Vec<(usize, usize)>,
}

impl Lfw1N {
    /// Lists `root/images/NAME/*.jpg`.
    pub fn load(root: &Path) -> Result<Lfw1N> {
        let dir = root.join("images");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading {}", dir.display()))?;
        names.retain(|p| p.is_dir());
        names.sort();
        let mut out = Lfw1N {
            images: Vec::new(),
            identity: Vec::new(),
            gallery: Vec::new(),
            probes: Vec::new(),
        };
        for person in names {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&person)
                .with_context(|| format!("reading {}", person.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<std::io::Result<_>>()
                .with_context(|| format!("reading {}", person.display()))?;
            files.retain(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg")));
            files.sort();
            let name = person
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for (i, file) in files.into_iter().enumerate() {
                let image = out.images.len();
                out.images.push(file);
                out.identity.push(name.clone());
                if i == 0 {
                    out.gallery.push(image);
                } else {
                    out.probes.push((image, out.gallery.len() - 1));
                }
            }
        }
        ensure!(
            !out.probes.is_empty(),
            "no identity under {} has two images",
            dir.display()
        );
        Ok(out)
    }

    /// Enrolled identities with at least one probe.
    pub fn mated_identities(&self) -> usize {
        let mut seen: Vec<usize> = self.probes.iter().map(|p| p.1).collect();
        seen.dedup();
        seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_1n_protocol_enrols_one_image_per_identity() {
        let dir = tempfile::tempdir().unwrap();
        for (name, n) in [("Ann", 3), ("Bob", 1), ("Cy", 2)] {
            let d = dir.path().join("images").join(name);
            std::fs::create_dir_all(&d).unwrap();
            for i in 1..=n {
                std::fs::write(d.join(format!("{name}_{i:04}.jpg")), b"x").unwrap();
            }
        }
        std::fs::write(dir.path().join("images/Ann/notes.txt"), b"x").unwrap();
        let p = Lfw1N::load(dir.path()).unwrap();
        assert_eq!(p.images.len(), 6);
        assert_eq!(p.gallery, vec![0, 3, 4]);
        assert_eq!(p.probes, vec![(1, 0), (2, 0), (5, 2)]);
        assert_eq!(p.mated_identities(), 2);
        assert_eq!(p.identity[5], "Cy");
        assert!(p.images[0].ends_with("Ann/Ann_0001.jpg"));
    }
}
