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
    },
    /// Benchmarks that print a table or one JSON object.
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        which: BenchCommand,
    },
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Exact (flat) index: single-query latency and batched throughput.
    Flat(FlatArgs),
    /// Durable gallery: enrollments per second, open times, identify under writes.
    Gallery(GalleryArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { listen, data_dir } => {
            let config = Config::load(&Overrides { listen, data_dir })?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(crate::http::serve(config))
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
