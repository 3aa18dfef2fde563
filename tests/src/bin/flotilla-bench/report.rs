//! The Markdown report: one table per benchmark, printed as it is measured.

use std::fmt::Write as _;
use std::process::Command;

use crate::Sizes;

/// One table, with sentences under it.
struct Section {
    title: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

pub struct Report {
    header: String,
    sections: Vec<Section>,
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

impl Report {
    pub fn new(sizes: &Sizes) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_default();
        let mem_gib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let profile = std::env::current_exe()
            .ok()
            .and_then(|e| {
                e.parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let header = format!(
            "date: {}\nmachine: {cores} cores ({cpu}), {mem_gib:.0} GiB, load average at start {}\n\
             build: {profile}\ncommand: {}\nsizes: {}\n",
            command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            std::env::args().collect::<Vec<_>>().join(" "),
            if sizes.smoke { "smoke" } else { "full" },
        );
        print!("{header}");
        Self {
            header,
            sections: Vec::new(),
        }
    }

    /// Starts a table.
    pub fn section(&mut self, title: &str, columns: &[&str]) {
        println!("\n## {title}\n{}", columns.join(" | "));
        self.sections.push(Section {
            title: title.to_owned(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        });
    }

    /// Adds a row to the current table.
    pub fn row(&mut self, cells: Vec<String>) {
        println!("{}", cells.join(" | "));
        if let Some(section) = self.sections.last_mut() {
            section.rows.push(cells);
        }
    }

    /// Adds a sentence under the current table.
    pub fn note(&mut self, text: &str) {
        println!("{text}");
        if let Some(section) = self.sections.last_mut() {
            section.notes.push(text.to_owned());
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for line in self.header.lines() {
            let _ = writeln!(out, "- {line}");
        }
        for Section {
            title,
            columns,
            rows,
            notes,
        } in &self.sections
        {
            let _ = writeln!(out, "\n### {title}\n");
            let _ = writeln!(out, "| {} |", columns.join(" | "));
            let _ = writeln!(out, "|{}", "---|".repeat(columns.len()));
            for r in rows {
                let _ = writeln!(out, "| {} |", r.join(" | "));
            }
            for n in notes {
                let _ = writeln!(out, "\n{n}");
            }
        }
        out
    }
}

/// `1234.5` → `1,235`.
pub fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

pub fn ms(x: f64) -> String {
    format!("{x:.2} ms")
}

pub fn ratio(x: f64) -> String {
    format!("{x:.2}")
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}
