//! Benchmark 8: a ~14 MB model to the real agent over a shaped link (`tc tbf` on a veth pair
//! into a network namespace) with a 5 s outage every 25 s, at 384 kbit/s and at 1 Mbit/s. The
//! reference is the time the link's rate alone needs for the model's bytes. Needs root; without
//! it the section says so. Not in `--smoke` (it takes minutes).

use flotilla_e2e::control::bin_dir;
use flotilla_e2e::shaped_link::{download_over, padded_onnx, ShapedLink};
use std::time::Duration;

use crate::report::{ratio, thousands, Report};

/// The model size: a MobileNetV2-sized file.
const MODEL_BYTES: usize = 14_000_000;
const PERIOD: Duration = Duration::from_secs(25);
const OUTAGE: Duration = Duration::from_secs(5);

pub async fn run(report: &mut Report) -> anyhow::Result<()> {
    report.section(
        "8. A 14 MB model over a shaped link, 5 s outage every 25 s (tbf on a veth pair; fraud padded to 14,000,000 bytes)",
        &[
            "link",
            "outages",
            "time to arrival",
            "link rate alone",
            "arrival / link rate alone",
            "bytes the server sent",
            "sent / model size",
            "resumed",
            "download_refused",
        ],
    );
    let fraud = std::fs::read(flotilla_e2e::models_dir().join("fraud-1.0.0.onnx"))?;
    let model = padded_onnx(&fraud, MODEL_BYTES);
    let inputs = flotilla_e2e::expected_model("fraud-1.0.0.onnx")["cases"][0]["inputs"].clone();
    for kbit in [384u32, 1000] {
        let mut link = match ShapedLink::create(kbit) {
            Ok(link) => link,
            Err(reason) => {
                report.note(&format!("skipped: needs root (ip netns, tc tbf): {reason}"));
                return Ok(());
            }
        };
        let got = download_over(
            &mut link,
            &bin_dir()?,
            &model,
            &inputs,
            (PERIOD, OUTAGE),
            Duration::from_secs(3600),
        )
        .await?;
        let alone = got.size as f64 * 8.0 / (f64::from(kbit) * 1000.0);
        println!(
            "shaped link {kbit} kbit/s: {:.1} s, {} outages, ratio {:.3}",
            got.arrival.as_secs_f64(),
            got.outages,
            got.ratio()
        );
        report.row(vec![
            format!("{kbit} kbit/s"),
            got.outages.to_string(),
            format!("{:.1} s", got.arrival.as_secs_f64()),
            format!("{alone:.1} s"),
            ratio(got.arrival.as_secs_f64() / alone),
            thousands(got.bytes_sent as f64),
            format!("{:.3}", got.ratio()),
            got.resumed.to_string(),
            got.refused.len().to_string(),
        ]);
    }
    Ok(())
}
