//! Text output for people: aligned tables, sizes, times, digests.

use flotilla_protocol::registry::{ModelVersionInfo, TensorInfo};
use indicatif::HumanBytes;

/// A table of left-aligned columns separated by two spaces.
#[derive(Debug)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<const N: usize>(header: [&str; N]) -> Self {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank, extra ones dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate().take(columns) {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = width.saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1101` → `1.08 KiB`.
pub fn human_size(bytes: u64) -> String {
    HumanBytes(bytes).to_string()
}

/// An RFC 3339 time shortened for tables: `2025-11-26 09:32:00Z`.
pub fn short_time(rfc3339: &str) -> String {
    match rfc3339.get(..19) {
        Some(head) if rfc3339.len() > 19 && rfc3339.as_bytes().get(10) == Some(&b'T') => {
            format!("{}Z", head.replacen('T', " ", 1))
        }
        _ => rfc3339.to_owned(),
    }
}

/// An optional time, `-` when absent.
pub fn short_time_or_dash(time: Option<&str>) -> String {
    time.map(short_time).unwrap_or_else(|| "-".to_owned())
}

/// The first 12 hex digits of a digest.
pub fn short_digest(hex: &str) -> String {
    hex.chars().take(12).collect()
}

/// `features FP32 [-1, 8]`.
pub fn tensor(t: &TensorInfo) -> String {
    let dims: Vec<String> = t.shape.iter().map(i64::to_string).collect();
    format!("{} {} [{}]", t.name, t.datatype, dims.join(", "))
}

/// Signer names of a version, comma-separated.
pub fn signer_names(version: &ModelVersionInfo) -> String {
    if version.signers.is_empty() {
        return "-".to_owned();
    }
    version
        .signers
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The full description of one version, as `push` prints it.
pub fn version_details(v: &ModelVersionInfo) -> String {
    let mut lines = vec![
        format!("{} {}", v.model, v.version),
        format!("  digest:    sha256:{}", v.artifact.sha256),
        format!(
            "  size:      {} ({} bytes)",
            human_size(v.artifact.size),
            v.artifact.size
        ),
    ];
    for (i, signer) in v.signers.iter().enumerate() {
        let label = if i == 0 { "signers:" } else { "" };
        lines.push(format!("  {label:<10} {} ({})", signer.name, signer.key_id));
    }
    lines.extend(tensor_lines(v, "  "));
    lines.push(format!(
        "  published: {} by {}",
        short_time(&v.created_at),
        v.published_by
    ));
    if let Some(at) = &v.yanked_at {
        let reason = v.yank_reason.as_deref().unwrap_or_default();
        lines.push(format!("  yanked:    {} {reason}", short_time(at)));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// `inputs:` and `outputs:` lines of a version.
pub fn tensor_lines(v: &ModelVersionInfo, indent: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for (label, tensors) in [("inputs:", &v.inputs), ("outputs:", &v.outputs)] {
        if tensors.is_empty() {
            lines.push(format!("{indent}{label:<10} -"));
        }
        for (i, t) in tensors.iter().enumerate() {
            let label = if i == 0 { label } else { "" };
            lines.push(format!("{indent}{label:<10} {}", tensor(t)));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let mut t = Table::new(["NAME", "ROLE", "NOTE"]);
        t.row(vec!["ci".into(), "publisher".into(), String::new()]);
        t.row(vec!["a-longer-name".into(), "viewer".into(), "x".into()]);
        assert_eq!(
            t.render(),
            "NAME           ROLE       NOTE\n\
             ci             publisher\n\
             a-longer-name  viewer     x\n"
        );
    }

    #[test]
    fn sizes_times_and_digests_are_shortened() {
        assert_eq!(human_size(1101), "1.08 KiB");
        assert_eq!(human_size(12), "12 B");
        assert_eq!(
            short_time("2025-11-26T09:32:00.123456Z"),
            "2025-11-26 09:32:00Z"
        );
        assert_eq!(short_time("2025-11-26T09:32:00Z"), "2025-11-26 09:32:00Z");
        assert_eq!(short_time("yesterday"), "yesterday");
        assert_eq!(short_time_or_dash(None), "-");
        assert_eq!(short_digest("acd677248c71ff3e867b"), "acd677248c71");
        let t = TensorInfo {
            name: "features".into(),
            datatype: "FP32".into(),
            shape: vec![-1, 8],
        };
        assert_eq!(tensor(&t), "features FP32 [-1, 8]");
    }
}
