//! The `biomatch` command line.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::bench::{self, flat::FlatArgs, gallery::GalleryArgs};
use crate::config::{Config, Overrides};

/// biomatch: biometric matching engine and server.
#[derive(Debug, Parser)]
#[command(name = "biomatch", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (defaults: 127.0.0.1:8080, data in ./data).
    Serve {
        /// Address to listen on (server.listen).
        #[arg(long)]
        listen: Option<String>,
        /// Data directory (storage.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// TOML configuration file (see the README, "Configuration").
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// API keys: print the sha256 to put in `[[auth.keys]]` for a key read from stdin.
    Keys {
        /// What to do.
        #[command(subcommand)]
        which: KeysCommand,
    },
    /// Evaluations on public datasets.
    Eval {
        /// Which evaluation.
        #[command(subcommand)]
        which: EvalCommand,
    },
    /// Run the face pipeline on one image: detection, quality, liveness, embedding.
    Face(crate::models::FaceArgs),
    /// Fingerprint images: extract minutiae to an ISO record, render for inspection.
    Finger {
        /// What to do.
        #[command(subcommand)]
        which: crate::finger::FingerCommand,
    },
    /// Model files: install from the mirror (or download), list.
    Models {
        /// What to do.
        #[command(subcommand)]
        which: ModelsCommand,
    },
    /// N:N de-duplication of a data directory: every pair of subjects,
    /// resumable (run the same command again after an interruption).
    Dedup(crate::dedup::DedupArgs),
    /// Datasets: synthetic galleries.
    Datasets {
        /// What to do.
        #[command(subcommand)]
        which: DatasetsCommand,
    },
    /// Benchmarks that print a table or one JSON object.
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        which: BenchCommand,
    },
}

/// API key tools.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Read a key from stdin (one line) and print its sha256 for the config file.
    Hash,
}

/// Evaluations.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// LFW View-2: 6000 pairs, 10-fold accuracy, EER, TAR at FAR.
    Lfw(crate::eval::lfw::LfwArgs),
    /// LFW open-set 1:N: rank-1, CMC, FNIR at FPIR (one image enrolled per identity).
    #[command(name = "lfw-1n")]
    Lfw1n(crate::eval::lfw::LfwArgs),
    /// Fingerprints: the FVC protocol on minutiae records (EER, FNMR@FMR).
    Fvc(crate::eval::fvc::FvcArgs),
    /// Seeded synthetic face vectors through a flat index: 1:1 and 1:N rates.
    Synthetic(crate::eval::synthetic::SyntheticArgs),
}

/// Dataset tools.
#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// Write a seeded synthetic gallery with planted duplicates (and truth.jsonl).
    Synth(crate::dedup::SynthArgs),
}

/// Model management.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Copy model files from the mirror (BIOMATCH_MODEL_MIRROR, default
    /// ../shared/models) into the manifests' folder, verifying sha256.
    Install {
        /// Model ids (default: every manifest).
        ids: Vec<String>,
        /// Folder of manifests (files are installed next to them).
        #[arg(long, default_value = "models")]
        models: PathBuf,
        /// Mirror folder (overrides BIOMATCH_MODEL_MIRROR).
        #[arg(long)]
        mirror: Option<PathBuf>,
        /// Download from the manifest's URL when the mirror lacks a file.
        #[arg(long)]
        download: bool,
    },
    /// List manifests and whether their files are installed.
    List {
        /// Folder of manifests.
        #[arg(long, default_value = "models")]
        models: PathBuf,
    },
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Exact (flat) index: single-query latency and batched throughput.
    Flat(FlatArgs),
    /// Durable gallery: enrollments per second, open times, identify under writes.
    Gallery(GalleryArgs),
    /// Face pipeline: per-stage latency, overhead vs bare ONNX Runtime, dynamic batching.
    Embed(bench::embed::EmbedArgs),
    /// HTTP load on a running server: identify and verify, template and image probes.
    Http(bench::http::HttpArgs),
    /// Fingerprints: minutiae comparisons per second, two-stage 1:N vs exhaustive.
    Finger(bench::finger::FingerArgs),
    /// N:N de-duplication: pairs per second against the int8 peak and faiss IndexFlatIP.
    Dedup(bench::dedup::DedupBenchArgs),
    /// biomatch's flat index against faiss (exact and approximate) on the same vectors.
    Compare(bench::compare::CompareArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keys {
            which: KeysCommand::Hash,
        } => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let key = line.trim_end_matches(['\r', '\n']);
            if key.len() < 16 {
                anyhow::bail!("a key needs at least 16 characters");
            }
            println!("{}", crate::api::auth::hash_key(key));
            Ok(())
        }
        Command::Serve {
            listen,
            data_dir,
            config,
        } => {
            let config = Config::load(&Overrides {
                listen,
                data_dir,
                config_file: config,
            })?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(crate::http::serve(config))
        }
        Command::Eval { which } => match which {
            EvalCommand::Lfw(args) => crate::eval::lfw::eval_lfw(&args),
            EvalCommand::Lfw1n(args) => crate::eval::lfw1n::eval_lfw_1n(&args),
            EvalCommand::Fvc(args) => crate::eval::fvc::eval_fvc(&args),
            EvalCommand::Synthetic(args) => crate::eval::synthetic::eval_synthetic(&args),
        },
        Command::Dedup(args) => {
            let summary = crate::dedup::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                crate::dedup::print(&summary);
            }
            Ok(())
        }
        Command::Datasets {
            which: DatasetsCommand::Synth(args),
        } => {
            let report = crate::dedup::synth(&args)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Face(args) => crate::models::run_face(&args),
        Command::Finger { which } => crate::finger::run(&which),
        Command::Models {
            which:
                ModelsCommand::Install {
                    ids,
                    models,
                    mirror,
                    download,
                },
        } => {
            let mirror = mirror.unwrap_or_else(crate::models::mirror_dir);
            for (id, outcome) in crate::models::install(&models, &mirror, &ids, download)? {
                println!("{id}: {outcome:?}");
            }
            Ok(())
        }
        Command::Models {
            which: ModelsCommand::List { models },
        } => {
            for m in biomatch_engine::embed::ModelManifest::load_dir(&models)? {
                let state = match biomatch_engine::embed::manifest::verify_file(&m, &m.path()) {
                    Ok(()) => "installed",
                    Err(_) if !m.path().exists() => "missing",
                    Err(_) => "CHECKSUM MISMATCH",
                };
                let licence = if m.commercial_use {
                    "commercial ok"
                } else {
                    "NON-COMMERCIAL"
                };
                println!(
                    "{:<18} {:<14} {:<10} {licence:<15} {}",
                    m.id,
                    m.task.as_str(),
                    state,
                    m.file
                );
            }
            Ok(())
        }
        Command::Bench {
            which: BenchCommand::Compare(args),
        } => {
            let report = bench::compare::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                bench::compare::print_table(&report);
            }
            Ok(())
        }
        Command::Bench {
            which: BenchCommand::Dedup(args),
        } => {
            let report = bench::dedup::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                bench::dedup::print_table(&report);
            }
            Ok(())
        }
        Command::Bench {
            which: BenchCommand::Finger(args),
        } => {
            let report = bench::finger::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                bench::finger::print(&report);
            }
            Ok(())
        }
        Command::Bench {
            which: BenchCommand::Flat(args),
        } => {
            let report = bench::flat::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                bench::flat::print_table(&report);
            }
            Ok(())
        }
        Command::Bench {
            which: BenchCommand::Embed(args),
        } => {
            let report = bench::embed::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                bench::embed::print_table(&report);
            }
            Ok(())
        }
        Command::Bench {
            which: BenchCommand::Http(args),
        } => {
            let report = bench::http::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                bench::http::print_table(&report);
            }
            Ok(())
        }
        Command::Bench {
            which: BenchCommand::Gallery(args),
        } => {
            let report = bench::gallery::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                bench::gallery::print_table(&report);
            }
            Ok(())
        }
    }
}
