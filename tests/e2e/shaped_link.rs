//! A slow link is not an attack (issue #14): the real agent process behind a real 384 kbit/s
//! link (`tc tbf` on a veth pair into a network namespace) that goes down for 5 s in every
//! 25 s gets its model, serves it, and costs the server little more than the model's size.
//!
//! Needs root. Without it the test is skipped with the reason printed, unless `CI=true`, where
//! a missing capability fails it.

use std::time::Duration;

use flotilla_e2e::shaped_link::{download_over, padded_onnx, ShapedLink};
use flotilla_e2e::{expected_model, fresh_binary, outputs_match};

/// The link, or `None` (skip) with the reason printed; with `CI=true` the reason fails the test.
fn link_or_skip(test: &str, rate_kbit: u32) -> Option<ShapedLink> {
    match ShapedLink::create(rate_kbit) {
        Ok(link) => Some(link),
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test} needs root (ip netns, veth, tc tbf), and CI=true: {reason}")
        }
        Err(reason) => {
            eprintln!("skipping {test}: it needs root (ip netns, veth, tc tbf): {reason}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_arrives_over_384_kbits_with_a_5s_outage_every_25s() {
    let Some(mut link) = link_or_skip(
        "a_model_arrives_over_384_kbits_with_a_5s_outage_every_25s",
        384,
    ) else {
        return;
    };
    // 1.5 MiB takes at least 33 s at 384 kbit/s, longer than one 25 s period: at least one
    // outage falls inside the download whatever the machine's speed.
    let fraud = std::fs::read(flotilla_e2e::models_dir().join("fraud-1.0.0.onnx")).unwrap();
    let model = padded_onnx(&fraud, 1536 * 1024);
    let case = &expected_model("fraud-1.0.0.onnx")["cases"][0];
    let bin_dir = fresh_binary("flotilla-agent", "flotilla-agent")
        .parent()
        .unwrap()
        .to_path_buf();
    let got = download_over(
        &mut link,
        &bin_dir,
        &model,
        &case["inputs"],
        (Duration::from_secs(25), Duration::from_secs(5)),
        // Generous: the link alone needs about 45 s.
        Duration::from_secs(600),
    )
    .await
    .unwrap();
    eprintln!(
        "{} bytes in {:?} with {} outages; the server sent {} bytes ({:.3}x); resumed {} times",
        got.size,
        got.arrival,
        got.outages,
        got.bytes_sent,
        got.ratio(),
        got.resumed
    );
    assert!(got.refused.is_empty(), "refused: {:#?}", got.refused);
    assert!(
        got.outages >= 1,
        "no outage fell inside the download: {got:?}"
    );
    assert!(
        got.ratio() <= 1.1,
        "the server sent {} bytes for a {}-byte model",
        got.bytes_sent,
        got.size
    );
    assert_eq!(got.answer["model_version"], "1.0.0", "{}", got.answer);
    outputs_match(&case["outputs"], &got.answer["outputs"]).unwrap();
}
