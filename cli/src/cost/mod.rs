//! `meridian cost`: what a month of a deployment costs on Google Cloud, line by line,
//! from a usage model (TOML) and a price table kept as a data file (`prices.toml`).
//!
//! Two models ship with the command: `seed.toml`, the original design's estimate
//! exactly as it was made (9 VMs × 9 regions × $7.88 + 10 TB × $0.023 = $868.28), and
//! `default.toml`, which adds what that estimate left out: the tenth region, a copy of
//! the data in every region, replication, operations, the serverless parts and egress,
//! which dominates a CDN's bill.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use crate::error::{CliError, Result};

/// The price table that ships with Meridian.
pub const BUILTIN_PRICES: &str = include_str!("prices.toml");
/// The original design's estimate.
pub const SEED_MODEL: &str = include_str!("seed.toml");
/// The default model: a deployment that serves its content.
pub const DEFAULT_MODEL: &str = include_str!("default.toml");

/// Prices in US dollars (see `prices.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// Monthly price of one VM, by machine type.
    pub vm_per_month: BTreeMap<String, f64>,
    /// Cloud Storage prices.
    pub storage: StoragePrices,
    /// Internet egress, by monthly volume tier, cheapest last.
    pub egress_tiers: Vec<EgressTier>,
    /// Cloud Run prices.
    pub cloud_run: CloudRunPrices,
    /// Pub/Sub prices.
    pub pubsub: PubSubPrices,
}

/// Cloud Storage prices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoragePrices {
    /// Standard storage, per GB-month.
    pub gb_month: f64,
    /// Class A operations, per 1,000.
    pub class_a_per_1000: f64,
    /// Class B operations, per 1,000.
    pub class_b_per_1000: f64,
    /// Copying between regions, per GB.
    pub inter_region_gb: f64,
}

/// One egress tier: this price per GB until the month's total reaches `up_to_gb`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressTier {
    /// Where the tier ends (cumulative GB this month); the last tier has none.
    pub up_to_gb: Option<f64>,
    /// Price per GB.
    pub per_gb: f64,
}

/// Cloud Run prices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudRunPrices {
    /// Per million requests.
    pub per_million_requests: f64,
    /// Per vCPU-second.
    pub per_vcpu_second: f64,
    /// Per GiB-second.
    pub per_gib_second: f64,
}

/// Pub/Sub prices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubPrices {
    /// Per TiB of throughput.
    pub per_tib: f64,
}

/// A month of usage. Every figure defaults to zero, so a model names only what it has.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Model {
    /// The edge fleet.
    pub compute: Compute,
    /// Cloud Storage.
    pub storage: Storage,
    /// Internet egress.
    pub egress: Egress,
    /// Cloud Run.
    pub cloud_run: CloudRun,
    /// Pub/Sub.
    pub pubsub: PubSub,
}

/// The edge fleet.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Compute {
    /// Regions running edge VMs.
    pub regions: u64,
    /// VMs per region, on average over the month.
    pub vms_per_region: f64,
    /// Machine type (a key of the price table's `vm_per_month`).
    pub machine_type: String,
}

/// Cloud Storage usage.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Data stored, in GB (one copy).
    pub stored_gb: f64,
    /// Buckets holding a full copy.
    pub copies: u64,
    /// New or changed data per month, in GB; copied to every other copy's region.
    pub written_gb: f64,
    /// Class A operations per month.
    pub class_a_operations: f64,
    /// Class B operations per month.
    pub class_b_operations: f64,
}

/// Internet egress.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Egress {
    /// GB served to the internet per month.
    pub gb: f64,
}

/// Cloud Run usage.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudRun {
    /// Requests per month.
    pub requests: f64,
    /// vCPU-seconds per month.
    pub vcpu_seconds: f64,
    /// GiB-seconds per month.
    pub gib_seconds: f64,
}

/// Pub/Sub usage.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PubSub {
    /// GB of messages per month.
    pub gb: f64,
}

/// One line of an estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// What is paid for.
    pub item: String,
    /// How it was computed.
    pub basis: String,
    /// Its cost in cents.
    pub cents: i64,
}

/// A month's cost, line by line.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// The lines, in the order of the model.
    pub lines: Vec<Line>,
}

impl Estimate {
    /// The total in cents: the sum of the lines as shown.
    pub fn total_cents(&self) -> i64 {
        self.lines.iter().map(|l| l.cents).sum()
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<28} {:<44} {:>12}", "ITEM", "BASIS", "PER MONTH");
        for line in &self.lines {
            let _ = writeln!(
                out,
                "{:<28} {:<44} {:>12}",
                line.item,
                line.basis,
                dollars(line.cents)
            );
        }
        let _ = writeln!(
            out,
            "{:<28} {:<44} {:>12}",
            "TOTAL",
            "",
            dollars(self.total_cents())
        );
        out
    }
}

/// `$1,234.56`.
pub fn dollars(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}${}.{:02}", grouped(cents / 100), cents % 100)
}

/// `1234567` as `1,234,567`.
fn grouped(whole: u64) -> String {
    let digits = whole.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Parses a model, naming the file in errors.
pub fn parse_model(text: &str, source: &str) -> Result<Model> {
    toml::from_str(text).map_err(|e| CliError::Internal(format!("{source}: {}", e.message())))
}

/// Parses a price table, naming the file in errors.
pub fn parse_prices(text: &str, source: &str) -> Result<Prices> {
    let prices: Prices = toml::from_str(text)
        .map_err(|e| CliError::Internal(format!("{source}: {}", e.message())))?;
    if prices
        .egress_tiers
        .last()
        .is_none_or(|t| t.up_to_gb.is_some())
    {
        return Err(CliError::Internal(format!(
            "{source}: egress_tiers: the last tier must have no up_to_gb"
        )));
    }
    Ok(prices)
}

/// Reads a file for `meridian cost`.
pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| CliError::ReadFile {
        path: path.display().to_string(),
        source,
    })
}

/// Prices `model`. Lines with nothing to pay for are left out.
pub fn estimate(model: &Model, prices: &Prices) -> Result<Estimate> {
    let mut lines = Vec::new();
    let mut add = |item: &str, basis: String, cost: f64| {
        if cost > 0.0 {
            lines.push(Line {
                item: item.to_string(),
                basis,
                cents: (cost * 100.0).round() as i64,
            });
        }
    };

    let compute = &model.compute;
    if compute.regions > 0 && compute.vms_per_region > 0.0 {
        let price = *prices
            .vm_per_month
            .get(&compute.machine_type)
            .ok_or_else(|| {
                CliError::Internal(format!(
                    "compute.machine_type: no price for {:?} (the price table has {})",
                    compute.machine_type,
                    prices
                        .vm_per_month
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let vms = compute.regions as f64 * compute.vms_per_region;
        add(
            &format!("Edge VMs ({})", compute.machine_type),
            format!(
                "{} VMs × {} regions × ${price}",
                number(compute.vms_per_region),
                compute.regions
            ),
            vms * price,
        );
    }

    let storage = &model.storage;
    let s = &prices.storage;
    let copies = storage.copies.max(1);
    add(
        "Storage",
        format!(
            "{} GB × {copies} {} × ${}/GB",
            number(storage.stored_gb),
            if copies == 1 { "copy" } else { "copies" },
            s.gb_month
        ),
        storage.stored_gb * copies as f64 * s.gb_month,
    );
    add(
        "Replication",
        format!(
            "{} GB written × {} regions × ${}/GB",
            number(storage.written_gb),
            copies - 1,
            s.inter_region_gb
        ),
        storage.written_gb * (copies - 1) as f64 * s.inter_region_gb,
    );
    add(
        "Storage operations (A)",
        format!(
            "{} × ${}/1,000",
            number(storage.class_a_operations),
            s.class_a_per_1000
        ),
        storage.class_a_operations / 1000.0 * s.class_a_per_1000,
    );
    add(
        "Storage operations (B)",
        format!(
            "{} × ${}/1,000",
            number(storage.class_b_operations),
            s.class_b_per_1000
        ),
        storage.class_b_operations / 1000.0 * s.class_b_per_1000,
    );

    let mut served = 0.0;
    for tier in &prices.egress_tiers {
        let end = tier.up_to_gb.unwrap_or(f64::INFINITY).min(model.egress.gb);
        let in_tier = (end - served).max(0.0);
        if in_tier > 0.0 {
            add(
                "Egress to the internet",
                format!("{} GB × ${}/GB", number(in_tier), tier.per_gb),
                in_tier * tier.per_gb,
            );
        }
        served = served.max(end);
    }

    let run = &model.cloud_run;
    let r = &prices.cloud_run;
    add(
        "Cloud Run requests",
        format!(
            "{} × ${}/million",
            number(run.requests),
            r.per_million_requests
        ),
        run.requests / 1e6 * r.per_million_requests,
    );
    add(
        "Cloud Run CPU",
        format!(
            "{} vCPU-s × ${}",
            number(run.vcpu_seconds),
            r.per_vcpu_second
        ),
        run.vcpu_seconds * r.per_vcpu_second,
    );
    add(
        "Cloud Run memory",
        format!("{} GiB-s × ${}", number(run.gib_seconds), r.per_gib_second),
        run.gib_seconds * r.per_gib_second,
    );
    add(
        "Pub/Sub",
        format!(
            "{} GB × ${}/TiB",
            number(model.pubsub.gb),
            prices.pubsub.per_tib
        ),
        model.pubsub.gb / 1024.0 * prices.pubsub.per_tib,
    );
    Ok(Estimate { lines })
}

/// A quantity, grouped and without needless decimals: `10,000`, `2.5`.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && (0.0..1e15).contains(&value) {
        grouped(value as u64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin(model: &str) -> Estimate {
        let prices = parse_prices(BUILTIN_PRICES, "prices.toml").expect("prices");
        estimate(&parse_model(model, "model").expect("model"), &prices).expect("estimate")
    }

    #[test]
    fn the_seed_reproduces_the_original_estimate_line_by_line() {
        let seed = builtin(SEED_MODEL);
        let lines: Vec<(&str, &str, i64)> = seed
            .lines
            .iter()
            .map(|l| (l.item.as_str(), l.basis.as_str(), l.cents))
            .collect();
        assert_eq!(
            lines,
            [
                ("Edge VMs (e2-micro)", "9 VMs × 9 regions × $7.88", 63_828),
                ("Storage", "10,000 GB × 1 copy × $0.023/GB", 23_000),
            ]
        );
        assert_eq!(dollars(seed.total_cents()), "$868.28");
        assert!(seed.render().contains("TOTAL"));
    }

    #[test]
    fn the_default_model_adds_what_the_estimate_left_out() {
        let model = builtin(DEFAULT_MODEL);
        let cost_of = |item: &str| -> i64 {
            model
                .lines
                .iter()
                .filter(|l| l.item == item)
                .map(|l| l.cents)
                .sum()
        };
        assert_eq!(cost_of("Edge VMs (e2-micro)"), 70_920, "ten regions");
        assert_eq!(cost_of("Storage"), 230_000, "ten copies");
        assert_eq!(cost_of("Replication"), 72_000);
        // 1,024 GB at $0.12, 9,216 at $0.11, 89,760 at $0.08.
        assert_eq!(
            cost_of("Egress to the internet"),
            12_288 + 101_376 + 718_080
        );
        assert_eq!(dollars(model.total_cents()), "$12,162.53");
        let egress = cost_of("Egress to the internet");
        assert!(
            egress * 2 > model.total_cents(),
            "egress is most of a CDN's bill"
        );
    }

    #[test]
    fn bad_models_are_refused_with_the_field() {
        let prices = parse_prices(BUILTIN_PRICES, "prices.toml").expect("prices");
        let unknown = parse_model("[compute]\nregion = 3\n", "m.toml").expect_err("refused");
        assert!(unknown.to_string().contains("region"), "{unknown}");
        let machine = parse_model(
            "[compute]\nregions = 1\nvms_per_region = 1\nmachine_type = \"n9\"\n",
            "m",
        )
        .expect("parses");
        let refused = estimate(&machine, &prices).expect_err("no price");
        assert!(
            refused.to_string().contains("compute.machine_type"),
            "{refused}"
        );
        let open_ended = "[vm_per_month]\n[storage]\ngb_month=1\nclass_a_per_1000=1\nclass_b_per_1000=1\ninter_region_gb=1\n[[egress_tiers]]\nup_to_gb=1\nper_gb=1\n[cloud_run]\nper_million_requests=1\nper_vcpu_second=1\nper_gib_second=1\n[pubsub]\nper_tib=1\n";
        assert!(parse_prices(open_ended, "p").is_err());
    }

    #[test]
    fn dollars_are_grouped() {
        assert_eq!(dollars(0), "$0.00");
        assert_eq!(dollars(86_828), "$868.28");
        assert_eq!(dollars(1_216_253), "$12,162.53");
        assert_eq!(dollars(123_456_789), "$1,234,567.89");
    }
}
