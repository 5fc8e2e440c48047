//! `bench-startup <namespace> <count> <sample.yaml>`: applies `count` copies of the sample
//! HostedCluster (`bench-1` …) in `namespace` at once and prints, per cluster, the seconds from
//! the apply to each milestone, then a summary line for `hack/bench.sh`.
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nestplane_api::HostedCluster;
use nestplane_e2e::startup::{Milestone, median_s, start_and_follow};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [namespace, count, sample] = args.as_slice() else {
        bail!("usage: bench-startup <namespace> <count> <sample.yaml>");
    };
    let count: usize = count.parse().context("count")?;
    let timeout = std::env::var("BENCH_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(600), Duration::from_secs);
    let text = std::fs::read_to_string(sample).with_context(|| format!("reading {sample}"))?;
    let template: HostedCluster = serde_yaml::from_str(&text).with_context(|| format!("parsing {sample}"))?;
    let clusters: Vec<HostedCluster> = (1..=count)
        .map(|i| {
            let mut hc = template.clone();
            hc.metadata.name = Some(format!("bench-{i}"));
            hc.metadata.namespace = Some(namespace.clone());
            hc
        })
        .collect();
    let client = nestplane_e2e::client().await?;
    let timelines = start_and_follow(&client, namespace, &clusters, timeout).await?;
    for (name, timeline) in &timelines {
        println!("startup: n={count} cluster={name} {}", timeline.fields());
    }
    let of = |m: Milestone| -> Vec<f64> {
        timelines
            .values()
            .filter_map(|t| t.get(m))
            .map(|d| d.as_secs_f64())
            .collect()
    };
    let available = of(Milestone::Available);
    let usable = of(Milestone::AdminUsable);
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "startup_summary: n={count} available_median_s={:.2} available_max_s={:.2} admin_usable_median_s={:.2} admin_usable_max_s={:.2}",
        median_s(available.clone()),
        max(&available),
        median_s(usable.clone()),
        max(&usable),
    );
    Ok(())
}
