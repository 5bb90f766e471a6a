//! `meridian`: run the CDN on this machine (`up`) and use it (`put`, `get`, `rm`,
//! `edges`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use meridian_cli::client::{self, Client};
use meridian_cli::emulators::{FakeGcsData, GcpEmulators};
use meridian_cli::sync::Invalidated;
use meridian_cli::{Ports, StackOptions, stack};

/// Meridian, a multi-region CDN.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Data folder of the local stack (buckets, certificates, secrets).
    #[arg(
        long,
        global = true,
        env = "MERIDIAN_DATA_DIR",
        default_value = ".meridian"
    )]
    data_dir: PathBuf,
    /// Seconds a client command waits for a connection to open.
    #[arg(long, global = true, env = "MERIDIAN_CONNECT_TIMEOUT", default_value = "5", value_name = "SECONDS", value_parser = milliseconds)]
    connect_timeout: u64,
    /// Seconds a client command waits for an answer to start, or for a transfer to
    /// move again; a transfer that keeps moving is never cut, however long it takes.
    #[arg(long, global = true, env = "MERIDIAN_TIMEOUT", default_value = "30", value_name = "SECONDS", value_parser = milliseconds)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

/// A number of seconds (fractions allowed, up to a day), as milliseconds.
fn milliseconds(text: &str) -> Result<u64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0 => {
            Ok((seconds * 1000.0).ceil() as u64)
        }
        _ => Err(format!(
            "{text:?} is not a number of seconds between 0 and 86400"
        )),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole CDN on loopback until Ctrl-C.
    Up {
        /// Deployment config (TOML); the 10 default regions when absent.
        #[arg(long, env = "MERIDIAN_CONFIG")]
        config: Option<PathBuf>,
        /// First port: services on BASE..BASE+4, edges from BASE+10.
        #[arg(long, default_value_t = 7070)]
        port_base: u16,
        /// Run on emulated Google Cloud: fake-gcs-server for the buckets (kept in the
        /// data folder) and the Google Cloud CLI's Pub/Sub emulator for storage
        /// notifications and invalidations, wired as infra/ wires Google Cloud.
        #[arg(long)]
        gcp_emulators: bool,
    },
    /// Upload FILE as NAME (default: the file's name).
    Put {
        /// File to upload.
        file: PathBuf,
        /// Object name.
        name: Option<String>,
    },
    /// Download NAME from the nearest edge that answers.
    Get {
        /// Object name.
        name: String,
        /// Write here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        location: LocationArgs,
    },
    /// Delete NAME everywhere.
    Rm {
        /// Object name.
        name: String,
    },
    /// Show the edges boot picks for a location.
    Edges {
        #[command(flatten)]
        location: LocationArgs,
    },
    /// Repair every regional bucket from the main bucket (what lost events left behind).
    Sync {
        /// Deployment config (TOML); the 10 default regions when absent.
        #[arg(long, env = "MERIDIAN_CONFIG")]
        config: Option<PathBuf>,
        /// Print what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Estimate a month of a deployment on Google Cloud, line by line.
    Cost {
        /// Price the original design's estimate exactly as it was made.
        #[arg(long, conflicts_with = "model")]
        seed: bool,
        /// A usage model (TOML); the built-in default model when absent.
        #[arg(long)]
        model: Option<PathBuf>,
        /// A price table (TOML) instead of the built-in one.
        #[arg(long)]
        prices: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct LocationArgs {
    /// Latitude to ask about (with --lon).
    #[arg(long, requires = "lon", allow_negative_numbers = true)]
    lat: Option<f64>,
    /// Longitude to ask about (with --lat).
    #[arg(long, requires = "lat", allow_negative_numbers = true)]
    lon: Option<f64>,
}

impl LocationArgs {
    fn pair(&self) -> Option<(f64, f64)> {
        self.lat.zip(self.lon)
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> meridian_cli::Result<()> {
    let limits = meridian_shared::config::OutboundSettings {
        connect_timeout_ms: cli.connect_timeout,
        request_timeout_ms: cli.timeout,
    };
    let data_dir = cli.data_dir;
    match cli.command {
        Command::Up {
            config,
            port_base,
            gcp_emulators,
        } => up(data_dir, config, port_base, gcp_emulators).await,
        Command::Put { file, name } => {
            let client = Client::connect(&data_dir, limits).await?;
            let report = client::put(&client, &file, name.as_deref()).await?;
            println!(
                "uploaded {} ({} bytes, {}, generation {}); replicating to every region",
                report.name, report.size, report.content_type, report.generation
            );
            Ok(())
        }
        Command::Get {
            name,
            output,
            location,
        } => {
            let client = Client::connect(&data_dir, limits).await?;
            let report = client::get(&client, &name, output.as_deref(), location.pair()).await?;
            let resumed = report
                .resumed_at
                .map_or(String::new(), |at| format!(", resumed at byte {at}"));
            eprintln!(
                "{} bytes from {} ({}, X-Cache: {}{resumed})",
                report.size, report.region, report.edge, report.cache
            );
            Ok(())
        }
        Command::Rm { name } => {
            let client = Client::connect(&data_dir, limits).await?;
            client::rm(&client, &name).await?;
            println!("deleted {name}");
            Ok(())
        }
        Command::Sync { config, dry_run } => sync(&data_dir, config, dry_run).await,
        Command::Cost {
            seed,
            model,
            prices,
        } => cost(seed, model.as_deref(), prices.as_deref()),
        Command::Edges { location } => {
            let client = Client::connect(&data_dir, limits).await?;
            let list = client::edges(&client, location.pair()).await?;
            let status = client::status(&client).await?;
            let health: std::collections::BTreeMap<&str, &meridian_shared::api::EdgeStatus> =
                status
                    .regions
                    .iter()
                    .flat_map(|r| r.edges.iter().map(|e| (e.url.as_str(), e)))
                    .collect();
            println!(
                "client at {:.4}, {:.4} ({})",
                list.client.lat,
                list.client.lon,
                list.client.source.as_str()
            );
            for (i, edge) in list.edges.iter().enumerate() {
                let probe = match health.get(edge.url.as_str()).and_then(|e| e.latency_ms) {
                    Some(ms) => format!("live, /healthz in {ms:.1} ms"),
                    None if status.probing => "live, not probed yet".to_string(),
                    None => "not probed".to_string(),
                };
                println!("{:>2}  {:<22} {:<26} {probe}", i + 1, edge.region, edge.url);
            }
            for region in &status.regions {
                for edge in region.edges.iter().filter(|e| !e.live) {
                    println!(
                        "    down: {:<16} {:<26} {}",
                        region.name,
                        edge.url,
                        edge.last_error.as_deref().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
    }
}

async fn sync(
    data_dir: &std::path::Path,
    config: Option<PathBuf>,
    dry_run: bool,
) -> meridian_cli::Result<()> {
    let config = meridian_shared::Config::load(config.as_deref())?;
    let spinner = indicatif::ProgressBar::new_spinner().with_message("objects checked");
    spinner.set_style(
        indicatif::ProgressStyle::with_template("{spinner} sync: {pos} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let counter = spinner.clone();
    let synced =
        meridian_cli::sync::sync(data_dir, config, dry_run, &move |n| counter.inc(n)).await?;
    spinner.finish_and_clear();
    let report = &synced.reconcile;
    for planned in &report.planned {
        println!(
            "{:<7} {:<22} {}",
            planned.action, planned.region, planned.name
        );
    }
    for failed in &report.failed {
        eprintln!(
            "skipped {} in {}: {}",
            failed.name, failed.region, failed.reason
        );
    }
    if dry_run {
        println!(
            "plan: {} copies, {} deletions, {} skipped (dry run: nothing changed)",
            report.copied,
            report.deleted,
            report.failed.len()
        );
    } else {
        let changed = report.changed.len();
        let purged = match synced.invalidated {
            Invalidated::Edges(0) => "no stack running here, so no edge to purge".to_string(),
            Invalidated::Edges(edges) => format!("purged {changed} objects at {edges} edges"),
            Invalidated::Topic(topic) => format!("published {changed} invalidations on {topic}"),
        };
        println!(
            "copied {}, deleted {}, skipped {}; {purged}",
            report.copied,
            report.deleted,
            report.failed.len()
        );
    }
    Ok(())
}

fn cost(
    seed: bool,
    model: Option<&std::path::Path>,
    prices: Option<&std::path::Path>,
) -> meridian_cli::Result<()> {
    use meridian_cli::cost;
    let (model_text, model_name) = match (seed, model) {
        (true, _) => (
            cost::SEED_MODEL.to_string(),
            "the seed estimate".to_string(),
        ),
        (false, Some(path)) => (cost::read(path)?, path.display().to_string()),
        (false, None) => (
            cost::DEFAULT_MODEL.to_string(),
            "the default model".to_string(),
        ),
    };
    let (prices_text, prices_name) = match prices {
        Some(path) => (cost::read(path)?, path.display().to_string()),
        None => (
            cost::BUILTIN_PRICES.to_string(),
            "built-in list prices".to_string(),
        ),
    };
    let estimate = cost::estimate(
        &cost::parse_model(&model_text, &model_name)?,
        &cost::parse_prices(&prices_text, &prices_name)?,
    )?;
    println!("{model_name}, {prices_name} (US dollars, per month)\n");
    print!("{}", estimate.render());
    Ok(())
}

async fn up(
    data_dir: PathBuf,
    config: Option<PathBuf>,
    port_base: u16,
    gcp_emulators: bool,
) -> meridian_cli::Result<()> {
    meridian_shared::telemetry::init();
    let config = meridian_shared::Config::load(config.as_deref())?;
    let emulators = if gcp_emulators {
        eprintln!("starting the Pub/Sub emulator and fake-gcs-server...");
        let folder = data_dir.join("fake-gcs");
        std::fs::create_dir_all(&folder)?;
        Some(GcpEmulators::start(&config, FakeGcsData::Folder(folder)).await?)
    } else {
        None
    };
    let running = stack::start(StackOptions {
        data_dir,
        ports: Ports::Fixed(port_base),
        config,
        emulators,
    })
    .await?;
    print_banner(&running);
    meridian_shared::function::shutdown_signal().await;
    running.stop().await;
    println!("stopped");
    Ok(())
}

fn print_banner(running: &meridian_cli::RunningStack) {
    let info = running.info();
    let data = info.data_dir.display();
    println!("Meridian is up. Data: {data}\n");
    println!("{:<10} URL", "SERVICE");
    let uploads = match running.emulators() {
        Some(_) => "storage",
        None => "gateway",
    };
    for (name, url) in [
        ("boot", &info.boot),
        ("sign", &info.sign),
        ("delete", &info.delete),
        ("replicate", &info.replicate),
        (uploads, &info.gateway),
    ] {
        println!("{name:<10} {url}");
    }
    if let Some(emulators) = running.emulators() {
        println!("{:<10} {} (emulator)", "pubsub", emulators.pubsub.host);
    }
    println!("{:<10} {}/status", "status", info.boot);
    println!("\n{:<22} {:<16} EDGE", "REGION", "CITY");
    for edge in &info.edges {
        println!("{:<22} {:<16} {}", edge.region, edge.city, edge.url);
    }
    let first_edge = info
        .edges
        .first()
        .map_or("https://127.0.0.1:7080", |e| e.url.as_str());
    println!("\nTry, in another terminal:");
    println!("  echo 'hello, world' > hello.txt");
    println!("  meridian put hello.txt");
    println!("  meridian get hello.txt");
    println!(
        "  curl --cacert {} {first_edge}/hello.txt",
        info.ca_cert.display()
    );
    println!("  meridian rm hello.txt");
    println!("\nCtrl-C stops the stack.");
}
